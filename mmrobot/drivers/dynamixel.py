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
one fair lock), as the real half-duplex bus requires; see :mod:`mmrobot.drivers.dynamixel_bus`
for how a transaction recovers from a corrupted reply without waiting out its timeout.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from mmrobot.core.errors import DeviceNotConnectedError, DeviceTimeoutError
from mmrobot.drivers._serial import SerialDriverConfig
from mmrobot.drivers.base import (
    Actuator,
    ActuatorConfig,
    Driver,
    register_actuator,
    register_driver,
)
from mmrobot.drivers.config_models import RigModel
from mmrobot.drivers.dynamixel_bus import DynamixelBus, acquire_bus, release_bus
from mmrobot.drivers.protocols.dynamixel import (
    REALTIME_TICK_WRAP,
    SERVO_MODELS,
    STATE_ADDR,
    STATE_LEN,
    ServoModel,
    XAddr,
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


class ServoConfig(RigModel):
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
        bus = acquire_bus(c.port, c.baud_rate, c.response_timeout_s, c.retries, self.source)
        try:
            bus.open()
            bus.verify_models(c.servos)
        except BaseException:
            release_bus(bus)
            raise
        self.bus = bus
        self._tick_prev = None
        self.clock_model.reset()
        self._next_poll = time.monotonic()

    def _disconnect(self) -> None:
        if self.bus is not None:
            release_bus(self.bus)
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
    ``unit = "m"`` servos), clamped to each servo's ``min``/``max``. It does not wait for a
    bus busy with the joint driver's read: the goal goes out as soon as that read ends
    (:meth:`~mmrobot.drivers.dynamixel_bus.DynamixelBus.post_sync_write`). After each send,
    ``last_send_ns`` is that post's (lock wait, write) wall ns (write 0: left with the read).
    """

    Config = DynamixelActuatorConfig
    config: DynamixelActuatorConfig

    def __init__(self, config: DynamixelActuatorConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.conv = ServoConversion(config.servos)
        self.bus: DynamixelBus | None = None
        self.last_send_ns: tuple[int, int] | None = None

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(s.joint for s in self.config.servos)

    def _connect(self) -> None:
        c = self.config
        bus = acquire_bus(c.port, c.baud_rate, c.response_timeout_s, c.retries, self.source)
        try:
            bus.open()
            bus.verify_models(c.servos)
            if c.torque_on_open:
                self.set_torque(True, bus)
        except BaseException:
            release_bus(bus)
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
            release_bus(self.bus)
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
        self.bus.post_sync_write(
            XAddr.GOAL_POSITION,
            4,
            {i: struct.pack("<i", int(t)) for i, t in zip(self.conv.ids, ticks, strict=True)},
        )
        self.last_send_ns = self.bus.last_post_ns
