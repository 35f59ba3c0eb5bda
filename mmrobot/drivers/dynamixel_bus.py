"""The Dynamixel Protocol 2.0 bus master: transactions on one serial port, shared fairly.

Spec: ROBOTIS e-Manual, "DYNAMIXEL Protocol 2.0" (emanual.robotis.com/docs/en/dxl/protocol2/):
sections "Instruction Packet" and "Status Packet" (every packet starts with the header
``FF FF FD 00``; a reply is one status packet per servo, back to back in Sync Read id order),
"Ping", "Read", "Write", "Sync Read", "Sync Write". Packet coding lives in
:mod:`mmrobot.drivers.protocols.dynamixel`.

Line noise: a reply whose CRC fails, whose header is garbled (the decoder skips its bytes and
resynchronises on the next ``FF FF FD 00``) or that stops mid-packet will never arrive whole.
Rather than wait out ``timeout_s`` for it, a transaction ends as soon as the line has been
quiet for ``quiet_s`` after such a fault and asks the servos still missing again at once
(a Sync Read is re-sent for those ids only). Only silence waits the full timeout.

The bus lock is fair (:class:`FairLock`, first come first served): the joint-state poll and
the goal-position writes of a shared bus take turns, one transaction at a time, so a goal
write waits at most for the one transaction in progress, never for a read's retries.

A goal write need not wait even for that (:meth:`DynamixelBus.post_sync_write`, what the
arm actuator sends with). A Sync Write goes to the broadcast id and no status packet comes
back (e-Manual, "Sync Write"), so it is a transaction of its own, one packet long: when the
bus is free it is written at once; when another thread's transaction holds
the bus it is left with that thread, which writes it as soon as its transaction ends (its
replies are in, or it gave up waiting for them) and before any thread queued for the bus.
The bus is half duplex, so that is also the earliest moment a waiting writer could have
written it; the control loop's tick just does not sit through the read. On the wire nothing
changes: every packet still goes out alone, between transactions.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from mmrobot.core.errors import (
    ConfigError,
    DeviceNotConnectedError,
    DeviceTimeoutError,
    ProtocolError,
)
from mmrobot.drivers._serial import is_port_failure, open_serial
from mmrobot.drivers.protocols.dynamixel import (
    BROADCAST_ID,
    ERROR_NAMES,
    MODEL_BY_NUMBER,
    SERVO_MODELS,
    Inst,
    Packet,
    PacketDecoder,
    build_packet,
)

if TYPE_CHECKING:
    from mmrobot.drivers.dynamixel import ServoConfig

__all__ = ["DynamixelBus", "FairLock"]

_QUIET_S = 0.002  # line idle this long after a fault: the rest of the reply is not coming
_CORRUPT_RETRIES = 3  # immediate re-asks per transaction after corrupted replies


class FairLock:
    """A reentrant lock granted in request order (``threading.RLock`` is not: a thread that
    releases it and asks again at once usually wins over one already waiting)."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[int] = deque()
        self._owner: int | None = None
        self._depth = 0

    @property
    def waiting(self) -> int:
        """Threads queued for the lock."""
        return len(self._queue)

    def acquire_if_free(self) -> bool:
        """Take the lock only if no thread holds it, ahead of any queued thread (they wait
        for a turn that has not begun yet); reentrant. Never blocks."""
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            if self._owner is not None:
                return False
            self._owner, self._depth = me, 1
            return True

    def acquire(self) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._owner == me:
                self._depth += 1
                return True
            self._queue.append(me)
            try:
                while self._owner is not None or self._queue[0] != me:
                    self._cond.wait()
            except BaseException:  # interrupted while queued: give up the place
                self._queue.remove(me)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._owner, self._depth = me, 1
            return True

    def release(self) -> None:
        with self._cond:
            if self._owner != threading.get_ident():
                raise RuntimeError("FairLock released by a thread that does not hold it")
            self._depth -= 1
            if self._depth == 0:
                self._owner = None
                self._cond.notify_all()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class _BusLock(FairLock):
    """The bus's lock: the end of each outermost hold first writes what was posted meanwhile
    (checked and released under the post lock, so a post either finds the bus free or is
    written here)."""

    def __init__(self, bus: DynamixelBus) -> None:
        super().__init__()
        self._bus = bus

    def release(self) -> None:
        if self._owner != threading.get_ident() or self._depth > 1:
            super().release()  # not ours (raises), or an inner hold
            return
        bus = self._bus
        while True:
            with bus._post_lock:
                if not bus._posted:
                    super().release()
                    return
                packets = list(bus._posted.values())
                bus._posted.clear()
            try:
                bus._write_posted(packets)
            except BaseException:  # interrupted: still give the bus back
                super().release()
                raise


class DynamixelBus:
    """Protocol 2.0 master on one serial port. Thread-safe: one transaction at a time.

    Args:
        port: serial port path.
        baud_rate: bus baud rate.
        timeout_s: how long to wait for a status packet.
        retries: extra attempts after a timeout (silence); a corrupted reply is re-asked at
            once without using them up (at most 3 times per transaction).
        source: rig file, for error hints.

    Attributes:
        attempts: requests written to the bus (first tries and retries).
        timeouts: attempts that waited the full ``timeout_s`` without every reply.
        corrupt_replies: attempts cut short by a corrupted reply and retried at once.
        deferred_writes: posted Sync Writes left with another thread's transaction.
        superseded_writes: of those, ones replaced by a newer post before they went out.
        last_post_ns: the latest :meth:`post_sync_write`'s (wait, write) wall ns: waiting
            for the post and bus locks' own mutexes (held briefly by another user of the bus;
            a post never queues for a transaction), then writing the packet and handing the
            bus back; write is 0 when the packet was left with another thread's transaction.
    """

    def __init__(
        self,
        port: str,
        baud_rate: int = 1_000_000,
        *,
        timeout_s: float = 0.05,
        retries: int = 1,
        source: str = "your rig file",
    ) -> None:
        self.port = port
        self.baud_rate = baud_rate
        self.timeout_s = timeout_s
        self.retries = retries
        self.source = source
        self.quiet_s = _QUIET_S
        self.decoder = PacketDecoder()
        self.lock: FairLock = _BusLock(self)
        self._ser: Any = None
        self._fd: int | None = None  # the port's descriptor, when pyserial's is non-blocking
        self.bytes_read = 0
        self.attempts = 0
        self.timeouts = 0
        self.corrupt_replies = 0
        self.deferred_writes = 0
        self.superseded_writes = 0
        self.last_post_ns: tuple[int, int] = (0, 0)
        self._refs = 0
        # posted writes waiting for the end of the transaction in progress, by what they
        # write (address, length, ids); guarded by _post_lock, which is taken before the bus
        # lock's own, so a post and the end of a turn never miss each other
        self._post_lock = threading.Lock()
        self._posted: dict[tuple[int, int, tuple[int, ...]], bytes] = {}
        self._post_error: BaseException | None = None

    # -- port ---------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def open(self) -> None:
        with self.lock:
            if self._ser is None:
                self._ser = open_serial(
                    self.port, self.baud_rate, timeout_s=0.002, source=self.source
                )
                self.decoder.reset()
                self._fd = _nonblocking_fd(self._ser)

    def close(self) -> None:
        with self.lock:
            if self._ser is not None:
                with contextlib.suppress(Exception):
                    self._ser.close()
                self._ser = None
                self._fd = None

    # -- posted writes --------------------------------------------------------------------

    def _write_packets(self, packets: list[bytes]) -> None:
        """Write packets that get no reply (the bus lock held), opening the port if a failure
        closed it, as a transaction does. A port failure closes it and raises."""
        if self._ser is None:
            self.open()
        ser = self._ser
        try:
            for packet in packets:
                self.attempts += 1
                fd = self._fd
                if fd is not None:
                    # pyserial's write waits in select() after every write (with a write
                    # timeout), a system call per packet; a packet the non-blocking descriptor
                    # takes whole is done without it, and pyserial writes whatever is left
                    try:
                        n = os.write(fd, packet)
                    except BlockingIOError:
                        n = 0
                    packet = packet[n:]
                if packet:
                    ser.write(packet)
        except Exception as e:
            if is_port_failure(e) and not isinstance(e, DeviceNotConnectedError):
                raise self._fail(e) from e
            raise

    def _write_posted(self, packets: list[bytes]) -> None:
        """Write packets posted by other threads (the bus lock held). A failure is kept for
        the next post: the thread that posted them has moved on, and this one is not theirs."""
        try:
            self._write_packets(packets)
        except Exception as e:
            with self._post_lock:
                self._post_error = e

    def post_sync_write(self, addr: int, length: int, data: Mapping[int, bytes]) -> bool:
        """Sync Write ``length`` bytes at ``addr`` to each id, without waiting for the bus.

        Written now when no other thread holds the bus; else left with the transaction in
        progress, which writes it when it ends, before any thread queued for the bus. A post
        to the same address, length and ids replaces one not yet written (only the newest
        goal matters).

        Returns:
            True when written now, False when left with the transaction in progress.

        Raises:
            DeviceNotConnectedError: the port failed, now or while writing an earlier post
                (that write was lost; reported once).
        """
        packet = self._sync_write_packet(addr, length, data)
        key = (addr, length, tuple(data))
        t0_ns = time.perf_counter_ns()
        with self._post_lock:
            error, self._post_error = self._post_error, None
            if error is not None:
                raise DeviceNotConnectedError(
                    f"Dynamixel bus on {self.port!r}: an earlier Sync Write was not written "
                    f"({error}); check the cable and power"
                ) from error
            if not self.lock.acquire_if_free():
                self.deferred_writes += 1
                if self._posted.pop(key, None) is not None:
                    self.superseded_writes += 1
                self._posted[key] = packet
                self.last_post_ns = (time.perf_counter_ns() - t0_ns, 0)
                return False
        t1_ns = time.perf_counter_ns()
        try:
            self._write_packets([packet])
        finally:
            self.lock.release()
        self.last_post_ns = (t1_ns - t0_ns, time.perf_counter_ns() - t1_ns)
        return True

    def _fail(self, e: BaseException) -> DeviceNotConnectedError:
        self.close()
        return DeviceNotConnectedError(
            f"Dynamixel bus on {self.port!r} went away: {e}; plug it back in"
        )

    # -- transactions ---------------------------------------------------------------------

    def transact(
        self,
        packet: bytes,
        expect_ids: Sequence[int],
        *,
        what: str,
        retry_packet: Callable[[Sequence[int]], bytes] | None = None,
    ) -> dict[int, Packet]:
        """Send ``packet`` and collect one status packet from each id in ``expect_ids``.

        Each attempt holds the bus lock alone, so other users of the bus get their turn
        between a read and its retry.

        Args:
            packet: the request.
            expect_ids: ids that answer it, in reply order.
            what: the request in words, for errors.
            retry_packet: builds the request for the ids still missing (a Sync Read of
                fewer ids); None re-sends ``packet``.

        Raises:
            DeviceTimeoutError: some ids did not answer (names them) after the retries.
            DeviceNotConnectedError: the port failed (unplugged).
        """
        got: dict[int, Packet] = {}
        timeouts_left, corrupt_left = self.retries, _CORRUPT_RETRIES
        request = packet
        while True:
            missing = [i for i in expect_ids if i not in got]
            outcome = self._attempt(request, missing, got)
            missing = [i for i in expect_ids if i not in got]
            if not missing:
                return got
            if outcome == "timeout":
                self.timeouts += 1
            else:
                self.corrupt_replies += 1
            if outcome == "corrupt" and corrupt_left > 0:
                corrupt_left -= 1
            elif timeouts_left > 0:
                timeouts_left -= 1
            else:
                break
            request = retry_packet(missing) if retry_packet is not None else packet
        ids = ", ".join(str(i) for i in missing)
        raise DeviceTimeoutError(
            f"Dynamixel servo id {ids} on {self.port!r} did not answer {what} within "
            f"{self.timeout_s * 1000:.0f} ms; check its power, cable, id and baud rate "
            f"({self.baud_rate}) in {self.source}"
        )

    def _attempt(
        self, packet: bytes, want_ids: Sequence[int], got: dict[int, Packet]
    ) -> Literal["ok", "timeout", "corrupt"]:
        """One request and its replies, under the lock; fills ``got``."""
        with self.lock:
            if self._ser is None:
                self.open()
            ser = self._ser
            d = self.decoder
            try:
                stale = ser.in_waiting  # late bytes of an earlier exchange (read, not tcflush)
                if stale:
                    ser.read(stale)
                d.reset()
                self.attempts += 1
                ser.write(packet)
                want = set(want_ids)
                faults = (d.checksum_errors, d.skipped_bytes)
                deadline = time.monotonic() + self.timeout_s
                last_rx: float | None = None
                while want - got.keys():
                    chunk = ser.read(max(1, ser.in_waiting))
                    now = time.monotonic()
                    if chunk:
                        last_rx = now
                        self.bytes_read += len(chunk)
                        for p in d.feed(chunk):
                            if p.is_status and p.id in want:
                                got[p.id] = p
                        bad = d.checksum_errors - faults[0]
                        if bad and not d.pending and len(want & got.keys()) + bad >= len(want):
                            # every reply is in, the missing ones failed their CRC: no reply
                            # is still on its way, so ask again without waiting for quiet
                            return "corrupt"
                    elif (
                        last_rx is not None
                        and now - last_rx >= self.quiet_s
                        and (d.pending or (d.checksum_errors, d.skipped_bytes) != faults)
                    ):
                        return "corrupt"  # resynchronised past a bad reply: ask again now
                    if now >= deadline and want - got.keys():
                        return "timeout"
            except Exception as e:
                if is_port_failure(e) and not isinstance(e, DeviceNotConnectedError):
                    raise self._fail(e) from e
                raise
        return "ok"

    @staticmethod
    def _check(p: Packet, what: str) -> bytes:
        err = p.error & 0x7F
        if err:
            raise ProtocolError(
                f"Dynamixel servo id {p.id} refused {what}: {ERROR_NAMES.get(err, f'error {err}')}"
            )
        return p.data

    def ping(self, dxl_id: int) -> tuple[int, int]:
        """(model number, firmware version) of servo ``dxl_id``."""
        p = self.transact(build_packet(dxl_id, Inst.PING), [dxl_id], what="ping")[dxl_id]
        data = self._check(p, "ping")
        if len(data) != 3:
            raise ProtocolError(
                f"Dynamixel servo id {dxl_id}: ping reply has {len(data)} bytes, expected 3"
            )
        model, fw = struct.unpack("<HB", data)
        return model, fw

    def read(self, dxl_id: int, addr: int, length: int) -> bytes:
        """Read ``length`` bytes at ``addr`` of servo ``dxl_id``."""
        pkt = build_packet(dxl_id, Inst.READ, struct.pack("<HH", addr, length))
        data = self._check(
            self.transact(pkt, [dxl_id], what=f"read@{addr}")[dxl_id], f"read@{addr}"
        )
        if len(data) != length:
            raise ProtocolError(
                f"Dynamixel servo id {dxl_id}: read {len(data)} bytes, asked {length}"
            )
        return data

    def write(self, dxl_id: int, addr: int, data: bytes) -> None:
        """Write ``data`` at ``addr`` of servo ``dxl_id`` and check its status."""
        pkt = build_packet(dxl_id, Inst.WRITE, struct.pack("<H", addr) + bytes(data))
        self._check(self.transact(pkt, [dxl_id], what=f"write@{addr}")[dxl_id], f"write@{addr}")

    def sync_read(self, ids: Sequence[int], addr: int, length: int) -> dict[int, bytes]:
        """Sync Read ``length`` bytes at ``addr`` from every id; id -> data."""

        def request(which: Sequence[int]) -> bytes:
            return build_packet(
                BROADCAST_ID, Inst.SYNC_READ, struct.pack("<HH", addr, length) + bytes(which)
            )

        got = self.transact(request(ids), ids, what="sync read", retry_packet=request)
        out = {}
        for i in ids:
            data = self._check(got[i], "sync read")
            if len(data) != length:
                raise ProtocolError(
                    f"Dynamixel servo id {i}: sync read gave {len(data)} bytes, expected {length}"
                )
            out[i] = data
        return out

    def sync_write(self, addr: int, length: int, data: Mapping[int, bytes]) -> None:
        """Sync Write ``length`` bytes at ``addr`` to each id (no status packets come back),
        waiting for the bus (see :meth:`post_sync_write` for not waiting)."""
        packet = self._sync_write_packet(addr, length, data)
        self.transact(packet, [], what="sync write")

    @staticmethod
    def _sync_write_packet(addr: int, length: int, data: Mapping[int, bytes]) -> bytes:
        body = bytearray(struct.pack("<HH", addr, length))
        for i, d in data.items():
            if len(d) != length:
                raise ValueError(f"sync write to id {i}: {len(d)} bytes, expected {length}")
            body.append(i)
            body += d
        return build_packet(BROADCAST_ID, Inst.SYNC_WRITE, bytes(body))

    def verify_models(self, servos: Sequence[ServoConfig]) -> None:
        """Ping each servo and check that its model number matches the rig file."""
        for s in servos:
            model, _fw = self.ping(s.id)
            expect = SERVO_MODELS[s.model].model_number
            if model != expect:
                found = MODEL_BY_NUMBER.get(model)
                raise ConfigError(
                    f"Dynamixel servo id {s.id} on {self.port!r} is model number {model}"
                    f" ({found.name if found else 'unknown'}), but {self.source} says {s.model}"
                    f" ({expect}); fix `model` of servo {s.id}"
                )


def _nonblocking_fd(ser: Any) -> int | None:
    """The descriptor of a pyserial port that is open non-blocking (POSIX), else None."""
    try:
        fd = ser.fileno()
        return fd if isinstance(fd, int) and not os.get_blocking(fd) else None
    except Exception:  # not a POSIX port (Windows, URL handlers): pyserial's write only
        return None


_POOL: dict[str, DynamixelBus] = {}
_POOL_LOCK = threading.Lock()


def acquire_bus(port: str, baud: int, timeout_s: float, retries: int, source: str) -> DynamixelBus:
    """The shared bus of ``port`` (created on first use); release it with :func:`release_bus`."""
    with _POOL_LOCK:
        bus = _POOL.get(port)
        if bus is None:
            bus = DynamixelBus(port, baud, timeout_s=timeout_s, retries=retries, source=source)
            _POOL[port] = bus
        elif bus.baud_rate != baud:
            raise ConfigError(
                f"port {port!r} is used at {bus.baud_rate} and {baud} baud in {source}; use one rate"
            )
        bus._refs += 1
        return bus


def release_bus(bus: DynamixelBus) -> None:
    """Drop one user of ``bus``; the last one closes the port."""
    with _POOL_LOCK:
        bus._refs -= 1
        if bus._refs <= 0:
            bus.close()
            _POOL.pop(bus.port, None)
