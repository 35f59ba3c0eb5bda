"""Dynamixel X-series arm on a Protocol 2.0 bus: joint-state Driver and goal-position Actuator.

Spec: ROBOTIS e-Manual, "DYNAMIXEL Protocol 2.0" (Ping, Read, Write, Sync Read, Sync Write,
status packet error field) and the X-series control tables ("XM430-W350" e-Manual, section 2:
Torque Enable 64, Goal Position 116, Realtime Tick 120, Present Current 126, Present Velocity
128, Present Position 132). Packet coding lives in :mod:`mmrobot.drivers.protocols.dynamixel`.

The driver polls one Sync Read of addresses 120..135 (realtime tick through present position)
for all servos at the stream rate. The first servo's realtime tick (ms, wrapping at 32768) is
unwrapped into device time and fed to a :class:`~mmrobot.sync.ClockModel`, so a sample is
stamped when the servos latched it, not when the bytes arrived. Ticks convert to joint units
per servo: ``angle_rad = sign * (tick - center) * 2*pi / ticks_per_rev + offset_rad``, and for a
servo with ``unit = "m"`` (a gripper) ``value_m = m_per_rad * angle_rad``.

A driver and an actuator on the same port share one :class:`DynamixelBus` (one serial port,
one lock), as the real half-duplex bus requires.
"""

from __future__ import annotations

import contextlib
import math
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from mmrobot.core.errors import (
    ConfigError,
    DeviceNotConnectedError,
    DeviceTimeoutError,
    ProtocolError,
)
from mmrobot.drivers._serial import SerialDriverConfig, is_port_failure, open_serial
from mmrobot.drivers.base import (
    Actuator,
    ActuatorConfig,
    Driver,
    _Model,
    register_actuator,
    register_driver,
)
from mmrobot.drivers.protocols.dynamixel import (
    BROADCAST_ID,
    ERROR_NAMES,
    MODEL_BY_NUMBER,
    REALTIME_TICK_WRAP,
    SERVO_MODELS,
    STATE_ADDR,
    STATE_LEN,
    Inst,
    Packet,
    PacketDecoder,
    ServoModel,
    XAddr,
    build_packet,
)

__all__ = [
    "DynamixelActuator",
    "DynamixelActuatorConfig",
    "DynamixelBus",
    "DynamixelConfig",
    "DynamixelDriver",
    "ServoConfig",
    "ServoConversion",
]


class ServoConfig(_Model):
    """One servo of the arm, in joint order.

    ``unit = "rad"`` gives a joint angle; ``unit = "m"`` a linear value (gripper opening)
    ``m_per_rad * angle_rad``. ``min``/``max`` bound commands, in the joint's unit.
    """

    id: int = Field(ge=0, le=252)
    model: str
    joint: str
    unit: Literal["rad", "m"] = "rad"
    sign: Literal[-1, 1] = 1
    offset_rad: float = 0.0
    m_per_rad: float = 1.0
    min: float | None = None
    max: float | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        if v not in SERVO_MODELS:
            raise ValueError(f"unknown servo model {v!r}; supported: {sorted(SERVO_MODELS)}")
        return v


class _BusFields(SerialDriverConfig):
    baud_rate: int = Field(default=1_000_000, gt=0)
    servos: tuple[ServoConfig, ...] = Field(min_length=1)
    response_timeout_s: float = Field(default=0.05, gt=0)
    retries: int = Field(default=1, ge=0)

    @field_validator("servos")
    @classmethod
    def _unique_ids(cls, v: tuple[ServoConfig, ...]) -> tuple[ServoConfig, ...]:
        ids = [s.id for s in v]
        if len(set(ids)) != len(ids):
            raise ValueError(f"servo ids must be unique, got {ids}")
        return v


class DynamixelConfig(_BusFields):
    """Rig entry of ``kind = "dynamixel"`` under ``[[driver]]``."""

    extra_streams: bool = False  # also publish <stream>_velocity (rad/s) and <stream>_current (mA)


class DynamixelActuatorConfig(ActuatorConfig):
    """Rig entry of ``kind = "dynamixel"`` under ``[[actuator]]``."""

    port: str
    baud_rate: int = Field(default=1_000_000, gt=0)
    servos: tuple[ServoConfig, ...] = Field(min_length=1)
    response_timeout_s: float = Field(default=0.05, gt=0)
    retries: int = Field(default=1, ge=0)
    read_timeout_s: float = Field(default=0.05, gt=0)
    torque_on_open: bool = True
    torque_off_on_close: bool = True


class ServoConversion:
    """Vectorized tick <-> joint-unit conversion for an ordered list of servos."""

    def __init__(self, servos: Sequence[ServoConfig]) -> None:
        models = [SERVO_MODELS[s.model] for s in servos]
        self.ids = [s.id for s in servos]
        self.models: list[ServoModel] = models
        self.center = np.array([m.center_tick for m in models], dtype=np.float64)
        self.rad_per_tick = np.array([m.rad_per_tick for m in models], dtype=np.float64)
        self.sign = np.array([s.sign for s in servos], dtype=np.float64)
        self.offset = np.array([s.offset_rad for s in servos], dtype=np.float64)
        self.scale = np.array(
            [s.m_per_rad if s.unit == "m" else 1.0 for s in servos], dtype=np.float64
        )
        self.lo = np.array([-np.inf if s.min is None else s.min for s in servos])
        self.hi = np.array([np.inf if s.max is None else s.max for s in servos])
        self.vel_rad_s = np.array([m.velocity_unit_rpm * 2 * math.pi / 60.0 for m in models])
        self.current_ma = np.array([m.current_unit_ma or 0.0 for m in models])

    def to_joint(self, ticks: np.ndarray) -> np.ndarray:
        """(N,) ticks -> (N,) joint values (rad or m)."""
        angle = (
            self.sign * (np.asarray(ticks, np.float64) - self.center) * self.rad_per_tick
            + self.offset
        )
        return angle * self.scale

    def to_ticks(self, values: np.ndarray) -> np.ndarray:
        """(N,) joint values -> (N,) int ticks (after clamping to each servo's min/max)."""
        v = np.clip(np.asarray(values, np.float64), self.lo, self.hi)
        angle = v / self.scale
        return np.rint(
            (angle - self.offset) / (self.sign * self.rad_per_tick) + self.center
        ).astype(np.int64)


# --------------------------------------------------------------------------- the bus


class DynamixelBus:
    """Protocol 2.0 master on one serial port. Thread-safe: one transaction at a time.

    Args:
        port: serial port path.
        baud_rate: bus baud rate.
        timeout_s: how long to wait for a status packet.
        retries: extra attempts after a timeout or a corrupted reply.
        source: rig file, for error hints.
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
        self.decoder = PacketDecoder()
        self.lock = threading.RLock()
        self._ser: Any = None
        self.bytes_read = 0
        self.timeouts = 0
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

    def transact(self, packet: bytes, expect_ids: Sequence[int], *, what: str) -> dict[int, Packet]:
        """Send ``packet`` and collect one status packet from each id in ``expect_ids``.

        Raises:
            DeviceTimeoutError: some ids did not answer (names them) after the retries.
            DeviceNotConnectedError: the port failed (unplugged).
        """
        last_missing: list[int] = list(expect_ids)

        for _attempt in range(self.retries + 1):
            with self.lock:
                if self._ser is None:
                    self.open()
                ser = self._ser
                try:
                    stale = (
                        ser.in_waiting
                    )  # drop late bytes of an earlier exchange (read, not tcflush)
                    if stale:
                        ser.read(stale)
                    self.decoder.reset()
                    ser.write(packet)
                    got: dict[int, Packet] = {}
                    if not expect_ids:
                        return got
                    deadline = time.monotonic() + self.timeout_s
                    want = set(expect_ids)
                    crc_errors = self.decoder.checksum_errors
                    while want - got.keys() and time.monotonic() < deadline:
                        chunk = ser.read(max(1, ser.in_waiting))
                        if not chunk:
                            continue
                        self.bytes_read += len(chunk)
                        for p in self.decoder.feed(chunk):
                            if p.is_status and p.id in want:
                                got[p.id] = p
                        if self.decoder.checksum_errors != crc_errors:
                            # a reply was corrupted: it will not come; the servos answer
                            # back to back, so the others arrive within a few ms or never
                            crc_errors = self.decoder.checksum_errors
                            deadline = min(deadline, time.monotonic() + _AFTER_CRC_ERROR_S)
                except Exception as e:
                    if is_port_failure(e) and not isinstance(e, DeviceNotConnectedError):
                        raise self._fail(e) from e
                    raise
            last_missing = [i for i in expect_ids if i not in got]
            if not last_missing:
                return got
            self.timeouts += 1
        ids = ", ".join(str(i) for i in last_missing)
        raise DeviceTimeoutError(
            f"Dynamixel servo id {ids} on {self.port!r} did not answer {what} within "
            f"{self.timeout_s * 1000:.0f} ms; check its power, cable, id and baud rate "
            f"({self.baud_rate}) in {self.source}"
        )

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
        pkt = build_packet(
            BROADCAST_ID, Inst.SYNC_READ, struct.pack("<HH", addr, length) + bytes(ids)
        )
        got = self.transact(pkt, ids, what="sync read")
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
_AFTER_CRC_ERROR_S = 0.01
_POOL_LOCK = threading.Lock()


def _acquire_bus(port: str, baud: int, timeout_s: float, retries: int, source: str) -> DynamixelBus:
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


def _release_bus(bus: DynamixelBus) -> None:
    with _POOL_LOCK:
        bus._refs -= 1
        if bus._refs <= 0:
            bus.close()
            _POOL.pop(bus.port, None)


# --------------------------------------------------------------------------- driver


@register_driver("dynamixel")
class DynamixelDriver(Driver):
    """Joint states of a Dynamixel arm: one ``(N,) float32`` stream of joint values.

    Streams: ``joints`` (default name; rad per joint, m for ``unit = "m"`` servos), and with
    ``extra_streams = true`` also ``<name>_velocity`` (rad/s) and ``<name>_current`` (mA).
    """

    Config = DynamixelConfig
    config: DynamixelConfig

    def __init__(self, config: DynamixelConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.conv = ServoConversion(config.servos)
        self.bus: DynamixelBus | None = None
        from mmrobot.sync import ClockModel

        self.clock_model = ClockModel()
        self._tick_prev: int | None = None
        self._device_ms = 0
        self._next_poll = 0.0

    def _stream_defaults(self) -> list[dict[str, Any]]:
        n = len(self.config.servos)
        main = self.config.stream.name or "joints"
        common = dict(
            modality="joints",
            shape=(n,),
            dtype="float32",
            rate_hz=200.0,
            policy="interp",
            max_age_ns=20_000_000,
        )
        out = [dict(name=main, history=10, **common)]
        if self.config.extra_streams:
            rate = self.config.stream.rate_hz or 200.0
            out.append(dict(common, name=f"{main}_velocity", modality="other", rate_hz=rate))
            out.append(dict(common, name=f"{main}_current", modality="other", rate_hz=rate))
        return out

    def _connect(self) -> None:
        c = self.config
        bus = _acquire_bus(c.port, c.baud_rate, c.response_timeout_s, c.retries, self.source)
        try:
            bus.open()
            bus.verify_models(c.servos)
        except BaseException:
            _release_bus(bus)
            raise
        self.bus = bus
        self._tick_prev = None
        self.clock_model.reset()
        self._next_poll = time.monotonic()

    def _disconnect(self) -> None:
        if self.bus is not None:
            _release_bus(self.bus)
            self.bus = None

    def _poll(self) -> None:
        bus = self.bus
        if bus is None:
            raise DeviceNotConnectedError(f"Dynamixel bus on {self.config.port!r} is not connected")
        period = 1.0 / self._specs[0].rate_hz
        delay = self._next_poll - time.monotonic()
        if delay > 0:
            self._stop.wait(delay)
        self._next_poll = max(self._next_poll + period, time.monotonic() - period)
        before = bus.bytes_read
        try:
            data = bus.sync_read(self.conv.ids, STATE_ADDR, STATE_LEN)
        except DeviceTimeoutError as e:
            self._c.timeouts += 1
            self._c.last_error = str(e)
            return
        finally:
            self._c.bytes += bus.bytes_read - before
            self._c.checksum_errors = bus.decoder.checksum_errors
            self._c.resyncs = bus.decoder.resyncs
        host_ns = self.clock.now_ns()
        self._c.frames += len(data)
        ids = self.conv.ids
        tick, cur, vel, pos = zip(
            *(struct.unpack_from("<H4xhii", data[i]) for i in ids), strict=True
        )
        device_ns = self._unwrap_tick(tick[0])
        self.clock_model.update(device_ns, host_ns)
        t_ns = self.clock_model.to_host(device_ns) - self._specs[0].latency_ns
        self._push(0, t_ns, self.conv.to_joint(np.array(pos)).astype(np.float32))
        if self.config.extra_streams:
            v = np.array(vel) * self.conv.vel_rad_s * self.conv.sign
            self._push(1, t_ns, v.astype(np.float32))
            self._push(2, t_ns, (np.array(cur) * self.conv.current_ma).astype(np.float32))

    def _unwrap_tick(self, tick: int) -> int:
        if self._tick_prev is not None:
            self._device_ms += (tick - self._tick_prev) % REALTIME_TICK_WRAP
        self._tick_prev = tick
        return self._device_ms * 1_000_000


# --------------------------------------------------------------------------- actuator


@register_actuator("dynamixel")
class DynamixelActuator(Actuator):
    """Goal positions for a Dynamixel arm, sent with one Sync Write per command.

    ``send(values)`` takes ``(N,)`` joint values in joint order and units (rad, or m for
    ``unit = "m"`` servos), clamped to each servo's ``min``/``max``.
    """

    Config = DynamixelActuatorConfig
    config: DynamixelActuatorConfig

    def __init__(self, config: DynamixelActuatorConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.conv = ServoConversion(config.servos)
        self.bus: DynamixelBus | None = None

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(s.joint for s in self.config.servos)

    def _connect(self) -> None:
        c = self.config
        bus = _acquire_bus(c.port, c.baud_rate, c.response_timeout_s, c.retries, self.source)
        try:
            bus.open()
            bus.verify_models(c.servos)
            if c.torque_on_open:
                self.set_torque(True, bus)
        except BaseException:
            _release_bus(bus)
            raise
        self.bus = bus

    def _disconnect(self) -> None:
        if self.bus is None:
            return
        try:
            if self.config.torque_off_on_close:
                self.set_torque(False, self.bus)
        except Exception:
            pass  # the bus may be gone; the servos drop torque on power loss anyway
        finally:
            _release_bus(self.bus)
            self.bus = None

    def set_torque(self, on: bool, bus: DynamixelBus | None = None) -> None:
        """Torque Enable (address 64) on every servo, each write checked."""
        bus = bus or self.bus
        if bus is None:
            raise DeviceNotConnectedError(f"actuator {self.name!r} is not open")
        for i in self.conv.ids:
            bus.write(i, XAddr.TORQUE_ENABLE, bytes((1 if on else 0,)))

    def read_positions(self) -> np.ndarray:
        """(N,) present joint values, read now with one Sync Read."""
        if self.bus is None:
            raise DeviceNotConnectedError(f"actuator {self.name!r} is not open")
        data = self.bus.sync_read(self.conv.ids, XAddr.PRESENT_POSITION, 4)
        return self.conv.to_joint(
            np.array([struct.unpack("<i", data[i])[0] for i in self.conv.ids])
        )

    def _send(self, command: Any) -> None:
        values = np.asarray(command, dtype=np.float64)
        if values.shape != (len(self.conv.ids),):
            raise ValueError(
                f"actuator {self.name!r}: command shape {values.shape}, expected ({len(self.conv.ids)},) "
                f"for joints {list(self.joint_names)}"
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(
                f"actuator {self.name!r}: command has non-finite values {values.tolist()}"
            )
        ticks = self.conv.to_ticks(values)
        if self.bus is None:
            raise DeviceNotConnectedError(f"actuator {self.name!r} is not connected")
        self.bus.sync_write(
            XAddr.GOAL_POSITION,
            4,
            {i: struct.pack("<i", int(t)) for i, t in zip(self.conv.ids, ticks, strict=True)},
        )
