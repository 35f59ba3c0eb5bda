"""LDROBOT LD06 / LD19 lidar packets: 47 bytes, 12 points, CRC-8, device timestamp.

Spec: LDROBOT "LD06 Development Manual" v1.0, section 3 "Communication Protocol" (the LD19
manual has the same format): 230400 baud, 8N1, the device streams without a request.
Packet: header 0x54, VerLen 0x2C (type 1, 12 points), speed u16 (deg/s), start angle u16
(0.01 deg), 12 x (distance u16 mm, intensity u8), end angle u16 (0.01 deg), timestamp u16
(ms, wraps at 30000), CRC-8 (poly 0x4D) of the preceding 46 bytes; little endian. Point i's
angle is interpolated linearly from start to end angle; angles increase clockwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from mmrobot.drivers.protocols._decoder import StreamDecoder
from mmrobot.drivers.protocols.crc import crc8_ld06

__all__ = ["LD06Decoder", "LD06Packet", "PACKET_LEN", "TIMESTAMP_WRAP_MS", "encode_packet"]

HEADER, VERLEN = 0x54, 0x2C
POINTS = 12
PACKET_LEN = 47
TIMESTAMP_WRAP_MS = 30000
_PT = np.dtype([("d", "<u2"), ("i", "u1")])


@dataclass(frozen=True, slots=True)
class LD06Packet:
    """One packet. angle_deg, distance_mm (12,) float64; intensity (12,) uint8."""

    speed_deg_s: int
    angle_deg: np.ndarray
    distance_mm: np.ndarray
    intensity: np.ndarray
    timestamp_ms: int


def encode_packet(
    speed_deg_s: int,
    start_deg: float,
    end_deg: float,
    distance_mm: np.ndarray,
    intensity: np.ndarray,
    timestamp_ms: int,
) -> bytes:
    """Device side: one 47-byte packet."""
    pts = np.zeros(POINTS, _PT)
    pts["d"] = np.clip(np.rint(distance_mm), 0, 65535)
    pts["i"] = np.clip(intensity, 0, 255)
    start = round(start_deg * 100) % 36000
    end = round(end_deg * 100) % 36000
    body = (
        struct.pack("<BBHH", HEADER, VERLEN, speed_deg_s, start)
        + pts.tobytes()
        + struct.pack("<HH", end, timestamp_ms % TIMESTAMP_WRAP_MS)
    )
    return body + bytes((crc8_ld06(body),))


def _decode(frame: bytes | bytearray) -> LD06Packet | None:
    speed, start = struct.unpack_from("<HH", frame, 2)
    end, ts = struct.unpack_from("<HH", frame, 42)
    if start >= 36000 or end >= 36000 or ts >= TIMESTAMP_WRAP_MS:
        return None
    span = (end - start) % 36000
    if span > 2000:  # 12 points never cover more than 20 degrees
        return None
    pts = np.frombuffer(frame, _PT, POINTS, 6)
    angle = (start + span * np.arange(POINTS) / (POINTS - 1)) % 36000 / 100.0
    return LD06Packet(speed, angle, pts["d"].astype(np.float64), pts["i"].copy(), ts)


class LD06Decoder(StreamDecoder):
    """Incremental byte -> :class:`LD06Packet` parser.

    A packet whose CRC-8 fails, or whose angles or timestamp are out of range, is counted in
    ``checksum_errors`` and dropped; the search resumes one byte after its header.
    """

    __slots__ = ()

    def feed(self, data: bytes | bytearray | memoryview) -> list[LD06Packet]:
        buf = self._buf
        buf += data
        out: list[LD06Packet] = []
        pos = 0
        n = len(buf)
        while n - pos >= PACKET_LEN:
            if buf[pos] != HEADER or buf[pos + 1] != VERLEN:
                start = buf.find(b"\x54\x2c", pos + 1)
                skip_to = start if start >= 0 else (n - 1 if buf[n - 1] == HEADER else n)
                self.resyncs += 1
                self.skipped_bytes += skip_to - pos
                pos = skip_to
                continue
            frame = buf[pos : pos + PACKET_LEN]
            pkt = _decode(frame) if crc8_ld06(memoryview(frame)[:46]) == frame[46] else None
            if pkt is None:
                self.checksum_errors += 1
                pos += 1
                continue
            out.append(pkt)
            self.frames += 1
            pos += PACKET_LEN
        if pos:
            del buf[:pos]
        return out
