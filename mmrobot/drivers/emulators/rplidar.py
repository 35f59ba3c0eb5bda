"""A Slamtec RPLIDAR A1 on a pseudo-terminal: requests, descriptors, rotating scan.

Device side of the RPLIDAR protocol (Slamtec LR001, sections 2-4): answers GET_HEALTH,
GET_INFO, STOP, RESET and SCAN; while scanning, streams 5-byte nodes of a :class:`Room` at
``rotation_hz`` with ``samples_per_rev`` samples per turn (clockwise angles, start flag on the
first node of each revolution). DTR (motor) cannot be seen on a pty: the head always turns.
"""

from __future__ import annotations

import math
import time

import numpy as np

from mmrobot.drivers.emulators.base import PtyEmulator
from mmrobot.drivers.emulators.room import Room
from mmrobot.drivers.protocols import rplidar as rp

__all__ = ["RplidarEmulator"]


class RplidarEmulator(PtyEmulator):
    """RPLIDAR A1 emulator.

    Args:
        room: the scene (default :class:`Room`).
        rotation_hz: revolutions per second.
        samples_per_rev: nodes per revolution.
        range_noise_m: standard deviation of range noise.
        max_range_m: beyond this, no return (distance 0).
        health: GET_HEALTH status (0 good, 1 warning, 2 error).
        **kwargs: :class:`PtyEmulator` options.
    """

    name = "rplidar"
    INFO = rp.DeviceInfo(
        model=0x18, firmware=(1, 29), hardware=7, serial="0123456789ABCDEF0123456789ABCDEF"
    )

    def __init__(
        self,
        room: Room | None = None,
        *,
        rotation_hz: float = 10.0,
        samples_per_rev: int = 360,
        range_noise_m: float = 0.0,
        max_range_m: float = 12.0,
        health: int = 0,
        **kwargs: object,
    ) -> None:
        kwargs.setdefault("tick_s", 0.005)  # type: ignore[arg-type]
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.room = room or Room()
        self.rotation_hz = rotation_hz
        self.samples_per_rev = samples_per_rev
        self.range_noise_m = range_noise_m
        self.max_range_m = max_range_m
        self.health = health
        self.scanning = False
        self._rx = bytearray()
        self._k = 0  # index of the next node
        self._scan_t0 = 0.0
        self.nodes_sent = 0

    def on_plug(self) -> None:
        self.scanning = False
        self._rx.clear()

    def on_bytes(self, data: bytes) -> None:
        self._rx += data
        while len(self._rx) >= 2:
            if self._rx[0] != 0xA5:
                del self._rx[0]
                continue
            cmd = self._rx[1]
            del self._rx[:2]
            if cmd == rp.Cmd.STOP or cmd == rp.Cmd.RESET:
                self.scanning = False
            elif cmd == rp.Cmd.GET_HEALTH:
                self.send(
                    rp.encode_descriptor(3, 0, rp.DataType.HEALTH)
                    + rp.DeviceHealth(self.health, 0).encode()
                )
            elif cmd == rp.Cmd.GET_INFO:
                self.send(rp.encode_descriptor(20, 0, rp.DataType.INFO) + self.INFO.encode())
            elif cmd in (rp.Cmd.SCAN, rp.Cmd.FORCE_SCAN):
                self.send(rp.encode_descriptor(5, 1, rp.DataType.SCAN))
                self.scanning = True
                self._scan_t0 = time.monotonic()
                self._k = 0

    def nodes_for(self, k0: int, k1: int) -> bytes:
        """Nodes k0..k1-1 since SCAN started (deterministic angles with a per-rev offset)."""
        k = np.arange(k0, k1)
        rev, i = np.divmod(k, self.samples_per_rev)
        offset = (rev * 0.37) % 1.0  # real heads do not hit the same angles every turn
        angle_cw = (i + offset) * (360.0 / self.samples_per_rev)
        dist = self.room.ranges(-np.deg2rad(angle_cw))
        if self.range_noise_m:
            dist = dist + self.rng.normal(0.0, self.range_noise_m, dist.shape)
        dist = np.where(dist <= self.max_range_m, dist, 0.0)
        quality = np.where(dist > 0, 47, 0)
        return rp.encode_nodes(angle_cw, dist * 1000.0, quality, i == 0)

    def tick(self, now_s: float) -> None:
        if not self.scanning:
            return
        rate = self.rotation_hz * self.samples_per_rev
        k_now = int(math.floor((now_s - self._scan_t0) * rate))
        if k_now <= self._k:
            return
        k_now = min(k_now, self._k + self.samples_per_rev)  # never more than a turn per tick
        self.send(self.nodes_for(self._k, k_now))
        self.nodes_sent += k_now - self._k
        self._k = k_now
