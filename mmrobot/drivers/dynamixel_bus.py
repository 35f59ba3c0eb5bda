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
"""

from __future__ import annotations

import contextlib
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
        self.lock = FairLock()
        self._ser: Any = None
        self.bytes_read = 0
        self.attempts = 0
        self.timeouts = 0
        self.corrupt_replies = 0
        self._refs = 0

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

    def close(self) -> None:
        with self.lock:
            if self._ser is not None:
                with contextlib.suppress(Exception):
                    self._ser.close()
                self._ser = None

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
        """Sync Write ``length`` bytes at ``addr`` to each id (no status packets come back)."""
        body = bytearray(struct.pack("<HH", addr, length))
        for i, d in data.items():
            if len(d) != length:
                raise ValueError(f"sync write to id {i}: {len(d)} bytes, expected {length}")
            body.append(i)
            body += d
        self.transact(
            build_packet(BROADCAST_ID, Inst.SYNC_WRITE, bytes(body)), [], what="sync write"
        )

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
