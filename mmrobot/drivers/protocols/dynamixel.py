"""Dynamixel Protocol 2.0 packets: building, byte stuffing and an incremental decoder.

Spec: ROBOTIS e-Manual, "DYNAMIXEL Protocol 2.0" (emanual.robotis.com/docs/en/dxl/protocol2/):
section "Instruction Packet" (header ``FF FF FD 00``, ID, 16-bit length = parameters + 3,
instruction, parameters, CRC-16 low byte first), "Status Packet" (instruction ``0x55``, error
byte, parameters), "Byte Stuffing" (``FF FF FD`` inside the packet body is followed by an
extra ``FD``; the length counts the stuffed bytes and the CRC covers the stuffed packet),
"CRC" and the instruction details ("Ping", "Read", "Write", "Sync Read", "Sync Write").
Control-table addresses follow the X-series e-Manual pages (e.g. "XM430-W350", section 2.
"Control Table"). Pure functions: no I/O, so they are fuzzed and benchmarked alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from mmrobot.drivers.protocols._decoder import StreamDecoder
from mmrobot.drivers.protocols.crc import crc16_dynamixel

__all__ = [
    "BROADCAST_ID",
    "HEADER",
    "Inst",
    "Packet",
    "PacketDecoder",
    "build_packet",
    "stuff",
    "unstuff",
    "ERROR_NAMES",
    "MODEL_BY_NUMBER",
    "REALTIME_TICK_WRAP",
    "SERVO_MODELS",
    "STATE_ADDR",
    "STATE_LEN",
    "ServoModel",
    "XAddr",
]

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE
MAX_LENGTH = 1024  # no legal packet of ours is longer; a larger length field means resync


class Inst:
    """Instruction codes (Protocol 2.0, "Instruction Packet" table)."""

    PING = 0x01
    READ = 0x02
    WRITE = 0x03
    REG_WRITE = 0x04
    ACTION = 0x05
    FACTORY_RESET = 0x06
    REBOOT = 0x08
    STATUS = 0x55
    SYNC_READ = 0x82
    SYNC_WRITE = 0x83
    BULK_READ = 0x92
    BULK_WRITE = 0x93


ERROR_NAMES = {
    1: "result fail",
    2: "instruction error",
    3: "CRC error",
    4: "data range error",
    5: "data length error",
    6: "data limit error",
    7: "access error",
}


@dataclass(frozen=True, slots=True)
class Packet:
    """A decoded packet (stuffing removed). For a status packet ``instruction == 0x55`` and
    ``params[0]`` is the error byte."""

    id: int
    instruction: int
    params: bytes

    @property
    def is_status(self) -> bool:
        return self.instruction == Inst.STATUS

    @property
    def error(self) -> int:
        """Status error byte (bit 7: hardware alert; bits 0-6: error number)."""
        return self.params[0] if self.is_status and self.params else 0

    @property
    def data(self) -> bytes:
        """Status parameters after the error byte."""
        return self.params[1:] if self.is_status else self.params


def stuff(body: bytes) -> bytes:
    """Insert ``FD`` after every ``FF FF FD`` in ``body`` (instruction onwards)."""
    if b"\xff\xff\xfd" not in body:
        return body
    return body.replace(b"\xff\xff\xfd", b"\xff\xff\xfd\xfd")


def unstuff(body: bytes) -> bytes:
    """Undo :func:`stuff`."""
    if b"\xff\xff\xfd\xfd" not in body:
        return body
    return body.replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")


def build_packet(dxl_id: int, instruction: int, params: bytes = b"") -> bytes:
    """A complete wire packet: header, id, length, stuffed body, CRC-16.

    For a status packet pass ``instruction=0x55`` and ``params = error byte + data``.
    """
    if not 0 <= dxl_id <= 0xFE:
        raise ValueError(f"Dynamixel id must be 0..254, got {dxl_id}")
    body = stuff(bytes((instruction,)) + bytes(params))
    length = len(body) + 2
    head = HEADER + bytes((dxl_id, length & 0xFF, length >> 8))
    crc = crc16_dynamixel(head + body)
    return head + body + bytes((crc & 0xFF, crc >> 8))


class PacketDecoder(StreamDecoder):
    """Incremental byte -> packet parser for both instruction and status packets.

    ``feed(data)`` returns the packets completed by ``data``. A packet whose CRC does not
    match is counted in ``checksum_errors`` and never returned; bytes skipped to find the
    next header are counted in ``resyncs`` (once per skip) and ``skipped_bytes``. The search
    restarts one byte after a rejected header, so a frame truncated by dropped bytes costs
    at most that frame, not the one after it.
    """

    __slots__ = ()

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        buf = self._buf
        buf += data
        out: list[Packet] = []
        pos = 0
        n = len(buf)
        while True:
            start = buf.find(HEADER, pos)
            if start < 0:
                # keep a possible partial header at the end
                keep = 0
                for k in (3, 2, 1):
                    if n - pos >= k and buf[n - k : n] == HEADER[:k]:
                        keep = k
                        break
                if n - keep > pos:
                    self.resyncs += 1
                    self.skipped_bytes += n - keep - pos
                pos = n - keep
                break
            if start > pos:
                self.resyncs += 1
                self.skipped_bytes += start - pos
            if n - start < 7:
                pos = start
                break
            length = buf[start + 5] | (buf[start + 6] << 8)
            if length < 3 or length > MAX_LENGTH:
                self.checksum_errors += 1  # an impossible length: a corrupted header
                pos = start + 1
                continue
            end = start + 7 + length
            if end > n:
                pos = start
                break
            crc = buf[end - 2] | (buf[end - 1] << 8)
            if crc16_dynamixel(memoryview(buf)[start : end - 2]) != crc:
                self.checksum_errors += 1
                pos = start + 1
                continue
            body = unstuff(bytes(buf[start + 7 : end - 2]))
            out.append(Packet(buf[start + 4], body[0], body[1:]))
            self.frames += 1
            pos = end
        if pos:
            del buf[:pos]
        return out


class XAddr:
    """X-series control table addresses (e-Manual "XM430-W350", section 2 "Control Table")."""

    MODEL_NUMBER = 0  # 2 bytes, EEPROM
    FIRMWARE_VERSION = 6  # 1
    ID = 7  # 1
    BAUD_RATE = 8  # 1
    RETURN_DELAY_TIME = 9  # 1
    OPERATING_MODE = 11  # 1
    VELOCITY_LIMIT = 44  # 4, unit 0.229 rev/min
    MAX_POSITION_LIMIT = 48  # 4
    MIN_POSITION_LIMIT = 52  # 4
    EEPROM_END = 64  # addresses below are EEPROM: writable only with torque off
    TORQUE_ENABLE = 64  # 1
    LED = 65  # 1
    HARDWARE_ERROR_STATUS = 70  # 1
    GOAL_POSITION = 116  # 4
    REALTIME_TICK = 120  # 2, ms, wraps at 32767
    MOVING = 122  # 1
    MOVING_STATUS = 123  # 1
    PRESENT_PWM = 124  # 2
    PRESENT_CURRENT = 126  # 2 (signed; Present Load on XL430/XL330-style models)
    PRESENT_VELOCITY = 128  # 4 (signed, 0.229 rev/min)
    PRESENT_POSITION = 132  # 4 (signed ticks)
    PRESENT_INPUT_VOLTAGE = 144  # 2
    PRESENT_TEMPERATURE = 146  # 1
    TABLE_SIZE = 147


# The block a joint-state sync read covers: realtime tick .. present position (16 bytes).
STATE_ADDR = XAddr.REALTIME_TICK
STATE_LEN = XAddr.PRESENT_POSITION + 4 - XAddr.REALTIME_TICK
REALTIME_TICK_WRAP = 32768


@dataclass(frozen=True, slots=True)
class ServoModel:
    """Per-model constants of an X-series servo.

    Attributes:
        name: ROBOTIS model name.
        model_number: value of the Model Number register (address 0).
        ticks_per_rev: position resolution.
        velocity_unit_rpm: one Present Velocity unit in rev/min.
        current_unit_ma: one Present Current unit in mA (None where register 126 is a load in 0.1 %).
        max_velocity_rad_s: no-load speed at 12 V (for emulation).
    """

    name: str
    model_number: int
    ticks_per_rev: int = 4096
    velocity_unit_rpm: float = 0.229
    current_unit_ma: float | None = 2.69
    max_velocity_rad_s: float = 4.8

    @property
    def center_tick(self) -> int:
        return self.ticks_per_rev // 2

    @property
    def rad_per_tick(self) -> float:
        return 2.0 * 3.141592653589793 / self.ticks_per_rev


# Model numbers and units from each model's e-Manual page (section 2 "Control Table" and
# section 1 "Specifications").
SERVO_MODELS: dict[str, ServoModel] = {
    m.name: m
    for m in (
        ServoModel("XM430-W350", 1020, current_unit_ma=2.69, max_velocity_rad_s=4.8),
        ServoModel("XM430-W210", 1030, current_unit_ma=2.69, max_velocity_rad_s=8.0),
        ServoModel("XM540-W270", 1120, current_unit_ma=2.69, max_velocity_rad_s=3.2),
        ServoModel("XL430-W250", 1060, current_unit_ma=None, max_velocity_rad_s=6.1),
        ServoModel("XC430-W150", 1070, current_unit_ma=None, max_velocity_rad_s=7.5),
        ServoModel("XL330-M288", 1200, current_unit_ma=1.0, max_velocity_rad_s=11.0),
        ServoModel("XL330-M077", 1190, current_unit_ma=1.0, max_velocity_rad_s=40.0),
    )
}
MODEL_BY_NUMBER = {m.model_number: m for m in SERVO_MODELS.values()}
