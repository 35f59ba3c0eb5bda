"""A device on a pseudo-terminal: the device side of a serial link, with fault injection.

The emulator owns the pty's master end; a driver opens the slave path with pyserial exactly
as it would open ``/dev/ttyUSB0``. A stable symlink (``link``) plays the role of a udev
``/dev/serial/by-id/...`` name: it disappears when the device is "unplugged" and comes back,
pointing at a new pty, when it is "plugged in" again.

Faults (applied to bytes the device sends): ``corrupt_rate`` corrupts a byte with that
probability (``corrupt_mode = "bit"`` flips one random bit, ``"byte"`` replaces the byte with
a random other value, as line noise that breaks a whole UART frame does), ``drop_rate``
drops a byte with that probability, ``unplug_after_s`` closes the pty after that many
seconds (and ``replug_after_s`` later opens a new one). The fault generator draws the same
numbers for every byte, so with a given ``seed`` the n-th byte sent meets the same fault
however the bytes are split into writes.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
import tty
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = ["PtyEmulator", "inject_faults"]


class PtyEmulator:
    """Base class: subclasses implement :meth:`on_bytes` (requests) and optionally :meth:`tick`.

    Args:
        link: path of a symlink to the current pty slave (created, replaced, removed).
        corrupt_rate: probability that a sent byte is corrupted.
        corrupt_mode: ``"bit"`` flips one random bit of a corrupted byte; ``"byte"``
            replaces it with a random other value.
        drop_rate: probability that a sent byte is dropped.
        unplug_after_s: close the pty this long after :meth:`start`.
        replug_after_s: reopen a pty this long after an unplug (None: stay unplugged).
        seed: seed of the fault and noise generator.
        tick_s: period of :meth:`tick` calls (streaming devices).
        line_baud: when set, bytes take their wire time at this baud rate (8N1, 10 bits a
            byte) in both directions, as on a real UART; a pty alone has no baud rate.
    """

    name = "device"

    def __init__(
        self,
        *,
        link: str | os.PathLike[str] | None = None,
        corrupt_rate: float = 0.0,
        corrupt_mode: Literal["bit", "byte"] = "bit",
        drop_rate: float = 0.0,
        unplug_after_s: float | None = None,
        replug_after_s: float | None = None,
        seed: int = 0,
        tick_s: float = 0.01,
        line_baud: int | None = None,
    ) -> None:
        for what, rate in (("corrupt_rate", corrupt_rate), ("drop_rate", drop_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{what} must be in [0, 1], got {rate}")
        if corrupt_mode not in ("bit", "byte"):
            raise ValueError(f"corrupt_mode must be 'bit' or 'byte', got {corrupt_mode!r}")
        self.link = Path(link) if link is not None else None
        self.corrupt_rate = corrupt_rate
        self.corrupt_mode = corrupt_mode
        self.bytes_corrupted = 0
        self.bytes_dropped = 0
        self.drop_rate = drop_rate
        self.unplug_after_s = unplug_after_s
        self.replug_after_s = replug_after_s
        self.rng = np.random.default_rng(seed)
        self.tick_s = tick_s
        self.line_baud = line_baud
        self._master: int | None = None
        self._slave: int | None = None
        self._slave_name = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._io_lock = threading.Lock()
        self._t0 = 0.0
        self.bytes_sent = 0
        self.bytes_received = 0
        self.plugged = False
        self.unplugs = 0
        self.fault_rng = np.random.default_rng([seed, 1])  # separate from the device's noise

    # -- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> str:
        """The path a driver opens: the link when there is one, else the pty slave."""
        return str(self.link) if self.link is not None else self._slave_name

    @property
    def slave_name(self) -> str:
        return self._slave_name

    def start(self) -> PtyEmulator:
        self._t0 = time.monotonic()
        self.plug()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"emulator-{self.name}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self.unplug(count=False)

    def __enter__(self) -> PtyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def plug(self) -> None:
        """Open a fresh pty (a device plugged in) and point the link at it."""
        with self._io_lock:
            if self.plugged:
                return
            master, slave = os.openpty()
            tty.setraw(slave)  # no echo, no line discipline, before any driver opens it
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self._slave_name = os.ttyname(slave)
            if self.link is not None:
                self.link.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.link.with_name(self.link.name + ".tmp")
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                os.symlink(self._slave_name, tmp)
                os.replace(tmp, self.link)
            self.plugged = True
        self.on_plug()

    def unplug(self, count: bool = True) -> None:
        """Close the pty (a device unplugged): the driver's reads and writes fail."""
        with self._io_lock:
            if not self.plugged:
                return
            if self.link is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.link.unlink()
            for fd in (self._master, self._slave):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._master = self._slave = None
            self.plugged = False
            if count:
                self.unplugs += 1

    # -- I/O --------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send bytes to the host, through the fault injector."""
        if self.corrupt_rate or self.drop_rate:
            data = self._inject(data)
        if self.line_baud:
            time.sleep(len(data) * 10 / self.line_baud)
        with self._io_lock:
            if self._master is None:
                return
            view = memoryview(data)
            deadline = time.monotonic() + 0.02
            while view:
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    n = 0
                except OSError:
                    return
                view = view[n:]
                self.bytes_sent += n
                if view:
                    if time.monotonic() > deadline:  # nobody reads: drop the rest, as a UART would
                        return
                    time.sleep(0.0005)

    def _inject(self, data: bytes) -> bytes:
        return inject_faults(self, data)

    def _loop(self) -> None:
        next_tick = time.monotonic()
        unplugged_at: float | None = None
        while not self._stop.is_set():
            now = time.monotonic()
            if (
                self.plugged
                and self.unplug_after_s is not None
                and unplugged_at is None
                and now - self._t0 >= self.unplug_after_s
            ):
                self.unplug()
                unplugged_at = now
            if (
                not self.plugged
                and unplugged_at is not None
                and self.replug_after_s is not None
                and now - unplugged_at >= self.replug_after_s
            ):
                self.plug()
            master = self._master
            if master is None:
                self._stop.wait(0.005)
                continue
            timeout = max(0.0, min(next_tick - now, 0.01))
            try:
                ready, _, _ = select.select([master], [], [], timeout)
            except (OSError, ValueError):
                continue
            if ready:
                try:
                    data = os.read(master, 65536)
                except (BlockingIOError, InterruptedError):
                    data = b""
                except OSError:
                    data = b""
                if data:
                    self.bytes_received += len(data)
                    if self.line_baud:
                        time.sleep(len(data) * 10 / self.line_baud)
                    self.on_bytes(data)
            now = time.monotonic()
            if now >= next_tick:
                self.tick(now)
                next_tick = max(next_tick + self.tick_s, now - self.tick_s)

    # -- device behaviour -------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        """Bytes arrived from the host."""

    def tick(self, now_s: float) -> None:
        """Called every ``tick_s`` (monotonic seconds): stream data, advance physics."""

    def on_plug(self) -> None:
        """Called after a (re)plug: reset the device's protocol state (a power cycle)."""


def inject_faults(emu: PtyEmulator, data: bytes) -> bytes:
    """``data`` after ``emu``'s corruption and drops; counts what it did.

    Three uniform numbers per byte (corrupt?, how, drop?) from ``emu.fault_rng``: the n-th
    byte meets the same fault whatever the split of ``data`` into calls.
    """
    arr = np.frombuffer(data, dtype=np.uint8).copy()
    u = emu.fault_rng.random((arr.size, 3))
    if emu.corrupt_rate:
        hit = u[:, 0] < emu.corrupt_rate
        if hit.any():
            if emu.corrupt_mode == "bit":
                arr[hit] ^= (1 << (u[hit, 1] * 8).astype(np.uint8)).astype(np.uint8)
            else:  # a random value other than the original
                arr[hit] ^= (1 + (u[hit, 1] * 255).astype(np.uint8)).astype(np.uint8)
            emu.bytes_corrupted += int(hit.sum())
    if emu.drop_rate:
        keep = u[:, 2] >= emu.drop_rate
        emu.bytes_dropped += int(arr.size - keep.sum())
        arr = arr[keep]
    return arr.tobytes()
