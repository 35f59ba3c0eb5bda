"""Checksums of the supported wire protocols (table driven, pure Python).

- CRC-16 of Dynamixel Protocol 2.0: polynomial 0x8005, initial value 0, not reflected
  (ROBOTIS e-Manual, "DYNAMIXEL Protocol 2.0", section "CRC"; the CRC-16/BUYPASS variant).
- CRC-16/MODBUS: polynomial 0x8005 reflected (0xA001), initial value 0xFFFF, sent low byte
  first (Modbus over Serial Line Specification V1.02, section 6.2.2).
- CRC-8 of the LDROBOT LD06/LD19: polynomial 0x4D, initial value 0, not reflected
  (LDROBOT "LD06 Development Manual", section 3 "Communication protocol", CRC check).
"""

from __future__ import annotations

import sys
from array import array

import numpy as np

__all__ = ["crc16_dynamixel", "crc16_dynamixel_bytewise", "crc16_modbus", "crc8_ld06"]


def _table16_msb(poly: int) -> list[int]:
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ poly) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        table.append(c)
    return table


def _table16_lsb(poly_reflected: int) -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly_reflected if c & 1 else c >> 1
        table.append(c)
    return table


def _table8(poly: int) -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ poly) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        table.append(c)
    return table


_LITTLE = sys.byteorder == "little"
_DXL = _table16_msb(0x8005)
_MODBUS = _table16_lsb(0xA001)
_LD06 = _table8(0x4D)


def crc16_dynamixel_bytewise(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Dynamixel CRC-16, one table lookup per byte (the reference for the fast version)."""
    t = _DXL
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ t[((crc >> 8) ^ b) & 0xFF]
    return crc


def _swap(x: int) -> int:
    return ((x & 0xFF) << 8) | (x >> 8)


def _dxl_word_table() -> list[int]:
    """U[x] = swap(T2[swap(x)]), T2 = CRC of two bytes with zero initial value.

    A 16-bit CRC absorbs 16 input bits at once: crc' = T2[crc ^ (b0 << 8 | b1)]. Keeping the
    register byte-swapped (s = swap(crc)) lets the loop XOR little-endian words directly:
    s' = U[s ^ w]. 65536 entries, built with numpy at import (about a millisecond), so no
    first packet pays for it.
    """
    t = np.array(_DXL, dtype=np.int64)
    x = np.arange(65536, dtype=np.int64)
    c = t[x >> 8]  # after the first byte (x >> 8) from a zero register
    c = ((c << 8) & 0xFFFF) ^ t[((c >> 8) ^ (x & 0xFF)) & 0xFF]
    swapped_x = ((x & 0xFF) << 8) | (x >> 8)
    u = np.empty(65536, dtype=np.int64)
    u[swapped_x] = ((c & 0xFF) << 8) | (c >> 8)
    return u.tolist()


_DXL2 = _dxl_word_table()


def crc16_dynamixel(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Dynamixel Protocol 2.0 CRC-16 of ``data`` (header through last parameter)."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    if n < 16:
        return crc16_dynamixel_bytewise(mv, crc)
    u = _DXL2
    even = n & ~1
    s = _swap(crc)
    words = array("H")
    words.frombytes(mv[:even])
    if not _LITTLE:
        words.byteswap()  # the table expects little-endian words
    for w in words:
        s = u[s ^ w]
    crc = _swap(s)
    if n & 1:
        crc = ((crc << 8) & 0xFFFF) ^ _DXL[((crc >> 8) ^ mv[n - 1]) & 0xFF]
    return crc


def crc16_modbus(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/MODBUS of ``data``; append it low byte first."""
    t = _MODBUS
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc


def crc8_ld06(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """LD06/LD19 CRC-8 of ``data`` (header through timestamp)."""
    t = _LD06
    for b in data:
        crc = t[crc ^ b]
    return crc
