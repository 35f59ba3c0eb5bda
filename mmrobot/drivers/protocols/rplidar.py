"""Slamtec RPLIDAR A1/A2 serial protocol: requests, response descriptors, scan nodes.

Spec: Slamtec "RPLIDAR Interface Protocol and Application Notes" (LR001, v2.x):
section 2 "Protocol" (request ``A5 cmd [size payload checksum]``; response descriptor
``A5 5A`` + 30-bit length with 2-bit send mode + data type), section 4 "Requests"
(STOP 0x25, RESET 0x40, SCAN 0x20, GET_INFO 0x50, GET_HEALTH 0x52) and the SCAN response
format: 5-byte nodes, byte 0 = quality(6) | !S | S, byte 1 = angle_q6[6:0] | C (check bit,
always 1), byte 2 = angle_q6[14:7], bytes 3-4 = distance_q2 (little endian, mm * 4); angle in
degrees = angle_q6 / 64, clockwise seen from above. Motor control of the A1 is the DTR line
(section "Motor control": DTR low runs the motor).

The standard scan format has no checksum. Its only integrity checks are two bits that the
protocol document fixes (LR001, SCAN response packet format): the inverted start flag !S
must be the complement of the start flag S, and the check bit C is always 1. A node that
fails either is rejected (counted in ``check_bit_errors``). :class:`NodeDecoder` also frames
nodes with angle continuity (the head turns one way, a small step per node; a node that
breaks it is counted in ``step_errors``), and it locks on only after several consecutive
consistent nodes; a dropped byte inside a node can still, rarely, yield one wrong node
before the lock is lost (see tests/benchmarks). Corrupted distance bytes pass every one of
these checks: the driver rejects such points by their jump against both neighbours
(:func:`mmrobot.drivers.lidar_scan.spike_mask`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from mmrobot.drivers.protocols._decoder import StreamDecoder

__all__ = [
    "Cmd",
    "DESCRIPTOR_LEN",
    "DeviceHealth",
    "DeviceInfo",
    "NodeDecoder",
    "Nodes",
    "encode_descriptor",
    "encode_nodes",
    "parse_descriptor",
    "request",
]

SYNC1, SYNC2 = 0xA5, 0x5A
DESCRIPTOR_LEN = 7
NODE_LEN = 5


class Cmd:
    STOP = 0x25
    RESET = 0x40
    SCAN = 0x20
    FORCE_SCAN = 0x21
    GET_INFO = 0x50
    GET_HEALTH = 0x52


class DataType:
    SCAN = 0x81
    INFO = 0x04
    HEALTH = 0x06


def request(cmd: int, payload: bytes = b"") -> bytes:
    """A request packet; with a payload, size and XOR checksum are appended."""
    if not payload:
        return bytes((SYNC1, cmd))
    body = bytes((SYNC1, cmd, len(payload))) + payload
    chk = 0
    for b in body:
        chk ^= b
    return body + bytes((chk,))


def encode_descriptor(length: int, send_mode: int, data_type: int) -> bytes:
    """Response descriptor: ``A5 5A`` + length (30 bits) | mode (2 bits) + data type."""
    return (
        bytes((SYNC1, SYNC2))
        + struct.pack("<I", (length & 0x3FFFFFFF) | (send_mode << 30))
        + bytes((data_type,))
    )


def parse_descriptor(data: bytes) -> tuple[int, int, int]:
    """(length, send mode, data type) of a 7-byte descriptor; ValueError if malformed."""
    if len(data) != DESCRIPTOR_LEN or data[0] != SYNC1 or data[1] != SYNC2:
        raise ValueError(f"not an RPLIDAR response descriptor: {data.hex(' ')}")
    word = struct.unpack("<I", data[2:6])[0]
    return word & 0x3FFFFFFF, word >> 30, data[6]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    model: int
    firmware: tuple[int, int]
    hardware: int
    serial: str

    @classmethod
    def parse(cls, data: bytes) -> DeviceInfo:
        if len(data) != 20:
            raise ValueError(f"GET_INFO payload must be 20 bytes, got {len(data)}")
        return cls(data[0], (data[2], data[1]), data[3], data[4:20].hex().upper())

    def encode(self) -> bytes:
        return bytes(
            (self.model, self.firmware[1], self.firmware[0], self.hardware)
        ) + bytes.fromhex(self.serial)


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    status: int  # 0 good, 1 warning, 2 error
    error_code: int

    @classmethod
    def parse(cls, data: bytes) -> DeviceHealth:
        if len(data) != 3:
            raise ValueError(f"GET_HEALTH payload must be 3 bytes, got {len(data)}")
        return cls(data[0], struct.unpack("<H", data[1:3])[0])

    def encode(self) -> bytes:
        return bytes((self.status,)) + struct.pack("<H", self.error_code)


@dataclass(frozen=True, slots=True)
class Nodes:
    """Decoded scan nodes. angle_deg (M,) float64 clockwise, distance_mm (M,) float64 (0 = no
    return), quality (M,) uint8, start (M,) bool (first node of a new revolution)."""

    angle_deg: np.ndarray
    distance_mm: np.ndarray
    quality: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return int(self.angle_deg.shape[0])

    @staticmethod
    def empty() -> Nodes:
        z = np.zeros(0)
        return Nodes(z, z, np.zeros(0, np.uint8), np.zeros(0, bool))


def encode_nodes(
    angle_deg: np.ndarray, distance_mm: np.ndarray, quality: np.ndarray, start: np.ndarray
) -> bytes:
    """Device side: (M,) arrays -> M * 5 bytes of scan nodes."""
    a = np.rint(np.mod(np.asarray(angle_deg, np.float64), 360.0) * 64.0).astype(np.int64) % (
        360 * 64
    )
    d = np.clip(np.rint(np.asarray(distance_mm, np.float64) * 4.0), 0, 65535).astype(np.int64)
    q = np.clip(np.asarray(quality, np.int64), 0, 63)
    s = np.asarray(start, bool).astype(np.int64)
    out = np.empty((a.size, 5), np.uint8)
    out[:, 0] = (q << 2) | ((1 - s) << 1) | s
    out[:, 1] = ((a & 0x7F) << 1) | 1
    out[:, 2] = a >> 7
    out[:, 3] = d & 0xFF
    out[:, 4] = d >> 8
    return out.tobytes()


_MAX_Q6 = 360 * 64


def _node_ok(rows: np.ndarray) -> np.ndarray:
    """Per-row checks of (M, 5) uint8 rows: !S == not S and C == 1 (LR001, SCAN response
    packet format) and an angle below 360 degrees."""
    b0 = rows[:, 0]
    b1 = rows[:, 1]
    angle = (rows[:, 2].astype(np.int64) << 7) | (b1 >> 1)
    return (((b0 ^ (b0 >> 1)) & 1) == 1) & ((b1 & 1) == 1) & (angle < _MAX_Q6)


class NodeDecoder(StreamDecoder):
    """Incremental byte -> :class:`Nodes` parser for the SCAN response stream.

    Args:
        max_step_deg: largest angle step accepted between consecutive nodes.
        lock_nodes: consecutive consistent nodes needed to (re)acquire framing.

    Attributes:
        check_bit_errors: nodes rejected while locked because !S == S or C == 0 (or an
            angle field of 360 degrees or more).
        step_errors: nodes rejected while locked because the angle did not step forward by
            at most ``max_step_deg`` (``checksum_errors`` is the sum of the two).
        suspects: nodes dropped with a rejected successor (a byte lost inside a node shows
            only in the next one).
    """

    def __init__(self, max_step_deg: float = 10.0, lock_nodes: int = 4) -> None:
        super().__init__()
        self.check_bit_errors = 0
        self.step_errors = 0
        self.suspects = 0
        self._max_step_q6 = int(max_step_deg * 64)
        self._lock_nodes = lock_nodes
        self._locked = False
        self._last_q6: int | None = None

    def reset(self) -> None:
        super().reset()
        self._locked = False
        self._last_q6 = None

    def _consistent(self, rows: np.ndarray, last_q6: int | None) -> np.ndarray:
        """(M,) mask: row passes the bit checks and steps forward from its predecessor."""
        ok = _node_ok(rows)
        angle = (rows[:, 2].astype(np.int64) << 7) | (rows[:, 1] >> 1)
        prev = np.empty_like(angle)
        prev[1:] = angle[:-1]
        prev[0] = angle[0] - 1 if last_q6 is None else last_q6  # no predecessor: no step check
        step = (angle - prev) % _MAX_Q6
        return ok & (step > 0) & (step <= self._max_step_q6)  # the head turns one way

    def feed(self, data: bytes | bytearray | memoryview) -> Nodes:
        self._buf += data
        buf = bytes(self._buf)  # numpy views of a bytearray would pin it against resizing
        n = len(buf)
        pos = 0
        chunks: list[np.ndarray] = []
        K = self._lock_nodes
        while n - pos >= NODE_LEN:
            if not self._locked:
                need = K * NODE_LEN
                found = -1
                for p in range(pos, n - need + 1):
                    rows = np.frombuffer(buf, np.uint8, need, p).reshape(K, NODE_LEN)
                    if self._consistent(rows, None).all():
                        found = p
                        break
                if found < 0:
                    keep_from = max(pos, n - need + 1)
                    if keep_from > pos:
                        self.resyncs += 1
                        self.skipped_bytes += keep_from - pos
                    pos = keep_from
                    break
                if found > pos:
                    self.resyncs += 1
                    self.skipped_bytes += found - pos
                pos = found
                self._locked = True
                self._last_q6 = None
            m = (n - pos) // NODE_LEN
            rows = np.frombuffer(buf, np.uint8, m * NODE_LEN, pos).reshape(m, NODE_LEN)
            ok = self._consistent(rows, self._last_q6)
            bad = np.flatnonzero(~ok)
            k = m if bad.size == 0 else int(bad[0])
            # A node is emitted only once its successor checks out: a byte dropped inside a
            # node's distance field passes that node's checks and shows only in the next one.
            emit = k - 1 if k > 0 else 0
            if emit:
                good = rows[:emit].copy()
                chunks.append(good)
                self._last_q6 = int((good[-1, 2].astype(np.int64) << 7) | (good[-1, 1] >> 1))
                pos += emit * NODE_LEN
            if k < m:
                # a node broke the framing: drop the suspect one before it, lose lock and
                # resume the search one byte further
                self.checksum_errors += 1
                if _node_ok(rows[k : k + 1])[0]:
                    self.step_errors += 1
                else:
                    self.check_bit_errors += 1
                self.suspects += int(k > 0)
                self._locked = False
                self._last_q6 = None
                pos += 1
            else:
                break  # the last node waits for its successor
        if pos:
            del self._buf[:pos]
        if not chunks:
            return Nodes.empty()
        rows = np.concatenate(chunks) if len(chunks) > 1 else chunks[0]
        self.frames += rows.shape[0]
        angle_q6 = (rows[:, 2].astype(np.int64) << 7) | (rows[:, 1] >> 1)
        dist_q2 = rows[:, 3].astype(np.int64) | (rows[:, 4].astype(np.int64) << 8)
        return Nodes(
            angle_deg=angle_q6 / 64.0,
            distance_mm=dist_q2 / 4.0,
            quality=(rows[:, 0] >> 2).astype(np.uint8),
            start=(rows[:, 0] & 1).astype(bool),
        )
