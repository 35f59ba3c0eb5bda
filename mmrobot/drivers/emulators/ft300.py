"""A Robotiq FT 300 on a pseudo-terminal: Modbus start command, 100 Hz data stream.

Device side of the FT 300 data-stream protocol (Robotiq "FT 300 Force Torque Sensor
Instruction Manual", section 4.4): answers the Modbus function-16 write of 0x0200 to
register 410 with the standard echo response, then streams 16-byte frames of the current
wrench plus Gaussian noise at ``rate_hz`` until it sees a run of 0xFF bytes.
"""

from __future__ import annotations

import struct
import threading

import numpy as np

from mmrobot.drivers.emulators.base import PtyEmulator
from mmrobot.drivers.protocols.crc import crc16_modbus
from mmrobot.drivers.protocols.ft300 import FT300_SLAVE_ID, STREAM_REGISTER, encode_frame

__all__ = ["FT300Emulator"]


class FT300Emulator(PtyEmulator):
    """FT 300 sensor with a settable wrench.

    Args:
        wrench: initial [fx, fy, fz (N), mx, my, mz (N*m)].
        noise_force_n: standard deviation of force noise.
        noise_torque_nm: standard deviation of torque noise.
        rate_hz: stream rate (the FT 300 streams at 100 Hz).
        **kwargs: :class:`PtyEmulator` options.
    """

    name = "ft300"

    def __init__(
        self,
        wrench: tuple[float, ...] = (0.0,) * 6,
        *,
        noise_force_n: float = 0.0,
        noise_torque_nm: float = 0.0,
        rate_hz: float = 100.0,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("tick_s", 1.0 / rate_hz)  # type: ignore[arg-type]
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._wrench = np.asarray(wrench, dtype=np.float64)
        self._wlock = threading.Lock()
        self.noise = np.array([noise_force_n] * 3 + [noise_torque_nm] * 3)
        self.streaming = False
        self.frames_sent = 0
        self._rx = bytearray()

    def set_wrench(self, wrench: np.ndarray | tuple[float, ...]) -> None:
        """Set the true wrench [fx, fy, fz (N), mx, my, mz (N*m)]."""
        w = np.asarray(wrench, dtype=np.float64)
        if w.shape != (6,):
            raise ValueError(f"wrench must have 6 values, got shape {w.shape}")
        with self._wlock:
            self._wrench = w

    @property
    def wrench(self) -> np.ndarray:
        with self._wlock:
            return self._wrench.copy()

    def on_plug(self) -> None:
        self.streaming = False  # power cycle: back to Modbus mode
        self._rx.clear()

    def on_bytes(self, data: bytes) -> None:
        self._rx += data
        if self.streaming:
            if b"\xff" * 20 in self._rx:
                self.streaming = False
            self._rx = self._rx[-64:]
            return
        expected = struct.pack(">BBHHB", FT300_SLAVE_ID, 0x10, STREAM_REGISTER, 1, 2)
        while True:
            i = self._rx.find(expected)
            if i < 0:
                self._rx = self._rx[-8:]
                return
            frame = bytes(self._rx[i : i + 11])
            if len(frame) < 11:
                del self._rx[:i]
                return
            del self._rx[: i + 11]
            if crc16_modbus(frame[:9]) != struct.unpack("<H", frame[9:])[0]:
                continue  # a real Modbus slave ignores a frame with a bad CRC
            if frame[7:9] == b"\x02\x00":
                reply = frame[:6]
                self.send(reply + struct.pack("<H", crc16_modbus(reply)))
                self.streaming = True
                self._rx.clear()
                return

    def tick(self, now_s: float) -> None:
        if not self.streaming:
            return
        w = self.wrench
        if self.noise.any():
            w = w + self.rng.normal(0.0, 1.0, 6) * self.noise
        self.send(encode_frame(w))
        self.frames_sent += 1
