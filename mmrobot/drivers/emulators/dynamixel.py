"""A Dynamixel Protocol 2.0 bus of X-series servos on a pseudo-terminal.

Device side of the protocol (ROBOTIS e-Manual, "DYNAMIXEL Protocol 2.0": Ping, Read, Write,
Sync Read, Sync Write, status packets and error codes) over a control table laid out as in
the X-series e-Manual ("XM430-W350", section 2 "Control Table"). Each servo tracks its goal
position with first-order dynamics (time constant ``tau_s``), bounded by its velocity limit,
and clamps goals to its position limits; it moves only with torque enabled. Writes to the
EEPROM area while torque is on are refused with an Access Error, as on the real servo.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Iterable

from mmrobot.drivers.emulators.base import PtyEmulator
from mmrobot.drivers.protocols.dynamixel import (
    BROADCAST_ID,
    SERVO_MODELS,
    Inst,
    PacketDecoder,
    ServoModel,
    XAddr,
    build_packet,
)

__all__ = ["DynamixelEmulator", "VirtualServo"]

ERR_INSTRUCTION, ERR_CRC, ERR_RANGE, ERR_LENGTH, ERR_LIMIT, ERR_ACCESS = 2, 3, 4, 5, 6, 7


class VirtualServo:
    """One X-series servo: control table + first-order position dynamics."""

    def __init__(
        self, dxl_id: int, model: ServoModel, tau_s: float = 0.05, position_tick: int | None = None
    ) -> None:
        self.id = dxl_id
        self.model = model
        self.tau_s = tau_s
        t = bytearray(XAddr.TABLE_SIZE)
        self.table = t
        struct.pack_into("<H", t, XAddr.MODEL_NUMBER, model.model_number)
        t[XAddr.FIRMWARE_VERSION] = 48
        t[XAddr.ID] = dxl_id
        t[XAddr.BAUD_RATE] = 3  # 1 Mbps
        t[XAddr.RETURN_DELAY_TIME] = 0
        t[XAddr.OPERATING_MODE] = 3  # position control
        vel_units = model.max_velocity_rad_s * 60.0 / (2 * math.pi) / model.velocity_unit_rpm
        struct.pack_into("<I", t, XAddr.VELOCITY_LIMIT, int(vel_units))
        struct.pack_into("<I", t, XAddr.MAX_POSITION_LIMIT, model.ticks_per_rev - 1)
        struct.pack_into("<I", t, XAddr.MIN_POSITION_LIMIT, 0)
        pos = model.center_tick if position_tick is None else position_tick
        self.position = float(pos)  # ticks, continuous
        self.velocity = 0.0  # ticks/s
        struct.pack_into("<i", t, XAddr.GOAL_POSITION, pos)
        struct.pack_into("<H", t, XAddr.PRESENT_INPUT_VOLTAGE, 120)
        t[XAddr.PRESENT_TEMPERATURE] = 35
        self._publish(0.0)

    def i32(self, addr: int) -> int:
        return struct.unpack_from("<i", self.table, addr)[0]

    @property
    def torque_on(self) -> bool:
        return self.table[XAddr.TORQUE_ENABLE] == 1

    def step(self, dt_s: float, tick_ms: int, noise: float = 0.0) -> None:
        """Advance the dynamics by ``dt_s`` and refresh the present-value registers."""
        if dt_s > 0 and self.torque_on:
            goal = float(self.i32(XAddr.GOAL_POSITION))
            alpha = 1.0 - math.exp(-dt_s / self.tau_s)
            delta = (goal - self.position) * alpha
            vmax = (
                self.i32(XAddr.VELOCITY_LIMIT)
                * self.model.velocity_unit_rpm
                / 60.0
                * self.model.ticks_per_rev
            )
            limit = vmax * dt_s
            delta = max(-limit, min(limit, delta))
            self.velocity = delta / dt_s
            self.position += delta
        elif dt_s > 0:
            self.velocity = 0.0
        self._publish(tick_ms, noise)

    def _publish(self, tick_ms: float, noise: float = 0.0) -> None:
        t = self.table
        m = self.model
        struct.pack_into("<H", t, XAddr.REALTIME_TICK, int(tick_ms) % 32768)
        moving = abs(self.velocity) > 1.0
        t[XAddr.MOVING] = int(moving)
        vel_units = self.velocity * 60.0 / m.ticks_per_rev / m.velocity_unit_rpm
        struct.pack_into("<i", t, XAddr.PRESENT_VELOCITY, int(round(vel_units)))
        struct.pack_into("<i", t, XAddr.PRESENT_POSITION, int(round(self.position + noise)))
        current = 20.0 + 0.05 * abs(self.velocity) if self.torque_on else 0.0
        struct.pack_into("<h", t, XAddr.PRESENT_CURRENT, int(current))

    def write(self, addr: int, data: bytes) -> int:
        """Write registers; returns a Protocol 2.0 error number (0 = ok)."""
        end = addr + len(data)
        if addr < 0 or end > XAddr.TABLE_SIZE:
            return ERR_ACCESS
        if addr < XAddr.EEPROM_END and self.torque_on:
            return ERR_ACCESS  # EEPROM is locked while torque is on
        if addr < XAddr.ID or end > XAddr.REALTIME_TICK:
            return ERR_ACCESS  # model number, firmware version and the present values are read-only
        if addr <= XAddr.GOAL_POSITION and end >= XAddr.GOAL_POSITION + 4:
            goal = struct.unpack_from("<i", data, XAddr.GOAL_POSITION - addr)[0]
            lo, hi = self.i32(XAddr.MIN_POSITION_LIMIT), self.i32(XAddr.MAX_POSITION_LIMIT)
            if not lo <= goal <= hi:
                return ERR_LIMIT
        if addr <= XAddr.TORQUE_ENABLE < end and data[XAddr.TORQUE_ENABLE - addr] > 1:
            return ERR_RANGE
        self.table[addr:end] = data
        if addr <= XAddr.ID < end:
            self.id = self.table[XAddr.ID]
        return 0

    def read(self, addr: int, length: int) -> bytes | None:
        if addr < 0 or length < 0 or addr + length > XAddr.TABLE_SIZE:
            return None
        return bytes(self.table[addr : addr + length])


class DynamixelEmulator(PtyEmulator):
    """A bus of X-series servos behind one pty.

    Args:
        servos: ``(id, model_name)`` pairs, e.g. ``[(1, "XM430-W350"), ...]``; default ids 1-7,
            all XM430-W350 (a 6-joint arm and its gripper).
        tau_s: time constant of every servo's position response.
        silent_ids: ids that exist on the bus but never answer (a servo with a broken cable).
        position_noise_ticks: standard deviation of present-position noise.
        **kwargs: :class:`PtyEmulator` options (link, faults, seed).
    """

    name = "dynamixel"

    def __init__(
        self,
        servos: Iterable[tuple[int, str]] | None = None,
        *,
        tau_s: float = 0.05,
        silent_ids: Iterable[int] = (),
        position_noise_ticks: float = 0.0,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("tick_s", 0.005)  # type: ignore[arg-type]
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.servos: dict[int, VirtualServo] = {}
        if servos is None:
            servos = [(i, "XM430-W350") for i in range(1, 8)]
        for dxl_id, model in servos:
            if model not in SERVO_MODELS:
                raise ValueError(f"unknown servo model {model!r}; known: {sorted(SERVO_MODELS)}")
            self.servos[dxl_id] = VirtualServo(dxl_id, SERVO_MODELS[model], tau_s=tau_s)
        self.silent_ids = set(silent_ids)
        self.position_noise_ticks = position_noise_ticks
        self._decoder = PacketDecoder()
        self._last_step = time.monotonic()
        self._start = self._last_step
        self.requests = 0

    def on_plug(self) -> None:
        self._decoder = PacketDecoder()

    def _advance(self) -> None:
        now = time.monotonic()
        dt = now - self._last_step
        self._last_step = now
        tick_ms = int((now - self._start) * 1000.0)
        for s in self.servos.values():
            noise = (
                float(self.rng.normal(0.0, self.position_noise_ticks))
                if self.position_noise_ticks
                else 0.0
            )
            s.step(dt, tick_ms, noise)

    def tick(self, now_s: float) -> None:
        self._advance()

    def _ordered(self) -> list[VirtualServo]:
        return [self.servos[i] for i in sorted(self.servos)]

    def _status(self, servo: VirtualServo, error: int, data: bytes = b"") -> None:
        if servo.id in self.silent_ids:
            return
        self.send(build_packet(servo.id, Inst.STATUS, bytes((error,)) + data))

    def on_bytes(self, data: bytes) -> None:
        for pkt in self._decoder.feed(data):
            if pkt.is_status:
                continue
            self.requests += 1
            self._advance()
            self._handle(pkt.id, pkt.instruction, pkt.params)

    def _handle(self, dxl_id: int, inst: int, p: bytes) -> None:
        targets = (
            self._ordered()
            if dxl_id == BROADCAST_ID
            else [self.servos[dxl_id]]
            if dxl_id in self.servos
            else []
        )
        if inst == Inst.PING:
            for s in targets:
                mn = struct.unpack_from("<H", s.table, XAddr.MODEL_NUMBER)[0]
                self._status(s, 0, struct.pack("<HB", mn, s.table[XAddr.FIRMWARE_VERSION]))
        elif inst == Inst.READ and dxl_id != BROADCAST_ID:
            for s in targets:
                if len(p) != 4:
                    self._status(s, ERR_LENGTH)
                    continue
                addr, length = struct.unpack("<HH", p)
                out = s.read(addr, length)
                self._status(s, ERR_ACCESS if out is None else 0, out or b"")
        elif inst == Inst.WRITE and dxl_id != BROADCAST_ID:
            for s in targets:
                if len(p) < 3:
                    self._status(s, ERR_LENGTH)
                    continue
                addr = struct.unpack_from("<H", p)[0]
                self._status(s, s.write(addr, p[2:]))
        elif inst == Inst.WRITE and dxl_id == BROADCAST_ID and len(p) >= 3:
            addr = struct.unpack_from("<H", p)[0]
            for s in self._ordered():
                s.write(addr, p[2:])
        elif inst == Inst.SYNC_READ and dxl_id == BROADCAST_ID and len(p) >= 5:
            addr, length = struct.unpack_from("<HH", p)
            for i in p[4:]:
                s = self.servos.get(i)
                if s is None:
                    continue
                out = s.read(addr, length)
                self._status(s, ERR_ACCESS if out is None else 0, out or b"")
        elif inst == Inst.SYNC_WRITE and dxl_id == BROADCAST_ID and len(p) >= 4:
            addr, length = struct.unpack_from("<HH", p)
            body = p[4:]
            step = 1 + length
            if length == 0 or len(body) % step:
                return
            for k in range(0, len(body), step):
                s = self.servos.get(body[k])
                if s is not None:
                    s.write(addr, body[k + 1 : k + step])
        elif inst == Inst.REBOOT:
            for s in targets:
                s.table[XAddr.TORQUE_ENABLE] = 0
                self._status(s, 0)
        else:
            for s in targets if dxl_id != BROADCAST_ID else []:
                self._status(s, ERR_INSTRUCTION)
