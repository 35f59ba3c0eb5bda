"""An LDROBOT LD06/LD19 on a pseudo-terminal: 47-byte packets with a drifting device clock.

Device side of the LD06 protocol (LDROBOT "LD06 Development Manual", section 3): streams
packets of 12 points of a :class:`Room` as soon as it is powered (plugged), at
``rotation_hz`` and ``samples_hz``; the timestamp field is the device's own millisecond clock,
which starts at ``clock_offset_ms`` and runs fast by ``clock_drift_ppm``.
"""

from __future__ import annotations

import math

import numpy as np

from mmrobot.drivers.emulators.base import PtyEmulator
from mmrobot.drivers.emulators.room import Room
from mmrobot.drivers.protocols import ld06 as proto

__all__ = ["LD06Emulator"]


class LD06Emulator(PtyEmulator):
    """LD06 emulator (also an LD19: same protocol).

    Args:
        room: the scene.
        rotation_hz: revolutions per second (the LD06 turns at about 10 Hz).
        samples_hz: points per second (4500 for the LD06).
        range_noise_m: standard deviation of range noise.
        clock_offset_ms: device clock at power-up.
        clock_drift_ppm: device clock rate error.
        **kwargs: :class:`PtyEmulator` options.
    """

    name = "ld06"

    def __init__(
        self,
        room: Room | None = None,
        *,
        rotation_hz: float = 10.0,
        samples_hz: float = 4500.0,
        range_noise_m: float = 0.0,
        max_range_m: float = 12.0,
        clock_offset_ms: int = 12345,
        clock_drift_ppm: float = 80.0,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("tick_s", 0.005)  # type: ignore[arg-type]
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.room = room or Room()
        self.rotation_hz = rotation_hz
        self.samples_hz = samples_hz
        self.range_noise_m = range_noise_m
        self.max_range_m = max_range_m
        self.clock_offset_ms = clock_offset_ms
        self.clock_drift_ppm = clock_drift_ppm
        self._p = 0  # next packet index
        self._t_on = 0.0
        self.packets_sent = 0

    def on_plug(self) -> None:
        import time

        self._t_on = time.monotonic()
        self._p = 0

    def packet(self, p: int) -> bytes:
        """Packet number ``p`` since power-up."""
        n = proto.POINTS
        k = np.arange(p * n, (p + 1) * n)
        t = k / self.samples_hz
        angle_cw = (t * self.rotation_hz * 360.0) % 360.0
        dist = self.room.ranges(-np.deg2rad(angle_cw))
        if self.range_noise_m:
            dist = dist + self.rng.normal(0.0, self.range_noise_m, dist.shape)
        dist = np.where(dist <= self.max_range_m, dist, 0.0)
        t_end = t[-1]
        device_ms = int(self.clock_offset_ms + t_end * 1000.0 * (1 + self.clock_drift_ppm * 1e-6))
        speed = round(self.rotation_hz * 360.0)
        return proto.encode_packet(
            speed,
            float(angle_cw[0]),
            float(angle_cw[-1]),
            dist * 1000.0,
            np.where(dist > 0, 200, 0),
            device_ms,
        )

    def tick(self, now_s: float) -> None:
        rate = self.samples_hz / proto.POINTS
        p_now = int(math.floor((now_s - self._t_on) * rate))
        if p_now <= self._p:
            return
        p_now = min(p_now, self._p + 64)
        self.send(b"".join(self.packet(p) for p in range(self._p, p_now)))
        self.packets_sent += p_now - self._p
        self._p = p_now
