"""Robotiq FT 300 force/torque sensor: Modbus RTU start command and data-stream frames.

Spec: Robotiq "FT 300 Force Torque Sensor Instruction Manual", section 4.4 "Serial
Communication" (RS-485, 19200 baud, 8N1, slave id 9) and its "Data stream" subsection:
writing 0x0200 to holding register 410 with Modbus function 16 starts a stream of 16-byte
frames at 100 Hz, ``0x20 0x4E`` then Fx, Fy, Fz, Mx, My, Mz as little-endian int16 and a
CRC-16/MODBUS of the first 14 bytes (low byte first); forces are in 1/100 N and moments in
1/1000 N*m. About 50 bytes of 0xFF stop the stream. Modbus framing follows "Modbus over
Serial Line Specification V1.02", section 2.5.1 (RTU) and 6.2.2 (CRC).
"""

from __future__ import annotations

import struct

import numpy as np

from mmrobot.drivers.protocols._decoder import StreamDecoder
from mmrobot.drivers.protocols.crc import crc16_modbus

__all__ = [
    "FRAME_LEN",
    "FRAME_HEADER",
    "FT300_SLAVE_ID",
    "FrameDecoder",
    "encode_frame",
    "modbus_write_registers",
    "start_stream_request",
    "STOP_STREAM",
]

FT300_SLAVE_ID = 9
STREAM_REGISTER = 410
FRAME_HEADER = b"\x20\x4e"
FRAME_LEN = 16
FORCE_SCALE_N = 1 / 100.0
TORQUE_SCALE_NM = 1 / 1000.0
STOP_STREAM = b"\xff" * 50
_SCALE = np.array([FORCE_SCALE_N] * 3 + [TORQUE_SCALE_NM] * 3)


def modbus_write_registers(slave: int, register: int, values: list[int]) -> bytes:
    """Modbus RTU function 16 (write multiple registers) request with its CRC."""
    body = struct.pack(">BBHHB", slave, 0x10, register, len(values), 2 * len(values))
    body += b"".join(struct.pack(">H", v) for v in values)
    crc = crc16_modbus(body)
    return body + struct.pack("<H", crc)


def start_stream_request(slave: int = FT300_SLAVE_ID) -> bytes:
    """The request that starts data-stream mode: ``09 10 01 9A 00 01 02 02 00 CD CA``."""
    return modbus_write_registers(slave, STREAM_REGISTER, [0x0200])


def encode_frame(wrench: np.ndarray) -> bytes:
    """A stream frame for ``wrench`` = [fx, fy, fz (N), mx, my, mz (N*m)] (device side)."""
    raw = np.clip(np.rint(np.asarray(wrench, np.float64) / _SCALE), -32768, 32767).astype("<i2")
    body = FRAME_HEADER + raw.tobytes()
    return body + struct.pack("<H", crc16_modbus(body))


def decode_frame(frame: bytes) -> np.ndarray:
    """(6,) float64 wrench of one checked 16-byte frame."""
    return np.frombuffer(frame, dtype="<i2", count=6, offset=2).astype(np.float64) * _SCALE


class FrameDecoder(StreamDecoder):
    """Incremental byte -> wrench parser for the FT 300 data stream.

    ``feed(data)`` returns a list of (6,) float64 wrenches. A frame whose CRC does not match
    is counted in ``checksum_errors`` and never returned; the search for the next header
    resumes one byte after the rejected one, so a truncated frame costs only itself.
    """

    __slots__ = ()

    def feed(self, data: bytes | bytearray | memoryview) -> list[np.ndarray]:
        buf = self._buf
        buf += data
        out: list[np.ndarray] = []
        pos = 0
        n = len(buf)
        while n - pos >= FRAME_LEN:
            if buf[pos] != 0x20 or buf[pos + 1] != 0x4E:
                start = buf.find(FRAME_HEADER, pos + 1)
                skip_to = start if start >= 0 else (n - 1 if buf[n - 1] == 0x20 else n)
                self.resyncs += 1
                self.skipped_bytes += skip_to - pos
                pos = skip_to
                continue
            end = pos + FRAME_LEN
            frame = bytes(buf[pos:end])
            if crc16_modbus(memoryview(frame)[:14]) != (frame[14] | frame[15] << 8):
                self.checksum_errors += 1
                pos += 1
                continue
            out.append(decode_frame(frame))
            self.frames += 1
            pos = end
        if pos:
            del buf[:pos]
        return out
