"""2D lidars over serial: Slamtec RPLIDAR A1/A2 and LDROBOT LD06/LD19, as point clouds.

Specs: Slamtec "RPLIDAR Interface Protocol and Application Notes" (LR001), sections 2-4
(see :mod:`mmrobot.drivers.protocols.rplidar`); LDROBOT "LD06 Development Manual", section 3
(see :mod:`mmrobot.drivers.protocols.ld06`).

Each driver assembles full revolutions into scans and publishes one ``(N, 3) float32`` point
cloud per revolution in the robot base frame: the sensor frame has x at angle 0, y to the
left and z up (the devices measure angles clockwise, so a point at device angle a is at
``(d cos a, -d sin a, 0)``), and the rig's ``extrinsics`` map it to the base frame. Returns are
binned into N equal angular bins (the nearest return wins); a bin with no return is (0, 0, 0).
Optionally, Open3D removes statistical outliers (their rows become zeros) and voxel
down-samples (then the first rows hold the voxel centroids and the rest are zeros).

RPLIDAR scans are stamped with the host receive time of the node that completed them; LD06
packets carry a millisecond device timestamp that feeds a :class:`~mmrobot.sync.ClockModel`.
Both subtract the stream's ``latency_ms``.

Line noise on the RPLIDAR (its standard scan nodes carry no checksum): a turn starts only
where the angle wraps, so a corrupted node whose start flag reads as set cannot split a turn;
nodes failing the protocol's check bits are rejected by the decoder; and a point that jumps
against both angular neighbours by more than ``max_jump_m`` (a corrupted distance byte) is
rejected per turn. :attr:`RplidarDriver.node_stats` counts each kind.

The drivers (configs, serial I/O, timestamps) are here; turning returns into turns and point
clouds, with no I/O, is in :mod:`mmrobot.drivers.lidar_scan`.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mmrobot.core.deps import require
from mmrobot.core.errors import DeviceNotConnectedError, DeviceTimeoutError, ProtocolError
from mmrobot.drivers._serial import SerialDriverConfig, open_serial, set_dtr
from mmrobot.drivers.base import Driver, register_driver
from mmrobot.drivers.lidar_scan import (
    RevolutionAssembler,
    RplidarNodeStats,
    RplidarScanner,
    scan_to_points,
    spike_mask,
)
from mmrobot.drivers.protocols import ld06 as ld06_proto
from mmrobot.drivers.protocols import rplidar as rp

__all__ = [
    "LD06Config",
    "LD06Driver",
    "LidarConfig",
    "RevolutionAssembler",
    "RplidarConfig",
    "RplidarDriver",
    "RplidarNodeStats",
    "RplidarScanner",
    "scan_to_points",
    "spike_mask",
]


class LidarConfig(SerialDriverConfig):
    """Fields shared by the lidar kinds."""

    min_range_m: float = Field(default=0.05, ge=0)
    max_range_m: float = Field(default=12.0, gt=0)
    voxel_size_m: float | None = Field(default=None, gt=0)
    outlier_neighbors: int | None = Field(default=None, ge=2)
    outlier_std_ratio: float = Field(default=2.0, gt=0)


class RplidarConfig(LidarConfig):
    """Rig entry of ``kind = "rplidar"`` (A1: 115200 baud; A2M12: 256000)."""

    baud_rate: int = Field(default=115200, gt=0)
    motor_control: bool = True
    response_timeout_s: float = Field(default=1.0, gt=0)
    max_jump_m: float = Field(default=0.3, gt=0)  # spike bound; inf keeps every point


class LD06Config(LidarConfig):
    """Rig entry of ``kind = "ld06"`` (also the LD19: same protocol)."""

    baud_rate: int = Field(default=230400, gt=0)
    model: Literal["ld06", "ld19"] = "ld06"


class _LidarDriver(Driver):
    config: LidarConfig

    def __init__(self, config: LidarConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.assembler = RevolutionAssembler()
        self._ser: Any = None
        self.scans = 0
        self._o3d: Any = None
        if config.voxel_size_m is not None or config.outlier_neighbors is not None:
            self._o3d = require("open3d", "lidar voxel down-sampling / outlier removal")

    def _stream_defaults(self) -> list[dict[str, Any]]:
        return [
            dict(
                name="lidar",
                modality="lidar",
                shape=(360, 3),
                dtype="float32",
                rate_hz=10.0,
                policy="causal",
                max_age_ns=250_000_000,
            )
        ]

    def _points(self, angle_deg: np.ndarray, distance_mm: np.ndarray) -> np.ndarray:
        c = self.config
        n = self._specs[0].shape[0]
        pts = scan_to_points(
            angle_deg,
            distance_mm / 1000.0,
            n,
            c.extrinsics,
            min_range_m=c.min_range_m,
            max_range_m=c.max_range_m,
        )
        if self._o3d is not None:
            pts = self._filter(pts)
        return pts

    def _filter(self, pts: np.ndarray) -> np.ndarray:
        o3d = self._o3d
        c = self.config
        rows = np.flatnonzero(np.any(pts != 0, axis=1))
        if rows.size == 0:
            return pts
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts[rows].astype(np.float64)))
        if c.outlier_neighbors is not None and rows.size > c.outlier_neighbors:
            pcd, keep = pcd.remove_statistical_outlier(c.outlier_neighbors, c.outlier_std_ratio)
            drop = np.setdiff1d(np.arange(rows.size), np.asarray(keep, np.int64))
            pts = pts.copy()
            pts[rows[drop]] = 0.0
        if c.voxel_size_m is not None:
            down = np.asarray(pcd.voxel_down_sample(c.voxel_size_m).points, np.float32)
            pts = np.zeros_like(pts)
            pts[: min(len(down), len(pts))] = down[: len(pts)]
        return pts

    def _emit(self, angle_deg: np.ndarray, distance_mm: np.ndarray, t_ns: int) -> None:
        self.scans += 1
        self._push(0, t_ns - self._specs[0].latency_ns, self._points(angle_deg, distance_mm))

    def _close_port(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.close()


@register_driver("rplidar")
class RplidarDriver(_LidarDriver):
    """Slamtec RPLIDAR A1/A2 in standard SCAN mode: ``(N, 3) float32`` points per revolution.

    ``stats.checksum_errors`` counts every node rejected (check bits, angle steps, spikes);
    :attr:`node_stats` breaks them down.
    """

    Config = RplidarConfig
    config: RplidarConfig

    def __init__(self, config: RplidarConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        jump = config.max_jump_m
        self.scanner = RplidarScanner(jump * 1000.0 if math.isfinite(jump) else None)
        self.decoder = self.scanner.decoder
        self.assembler = self.scanner.assembler
        self.info: rp.DeviceInfo | None = None
        self.health_status: rp.DeviceHealth | None = None
        self.motor_control_supported: bool | None = None
        self._last_stamp_ns = -(2**62)

    def _read_exact(self, ser: Any, n: int, what: str) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + self.config.response_timeout_s
        while len(out) < n:
            if time.monotonic() > deadline:
                raise DeviceTimeoutError(
                    f"RPLIDAR on {self.config.port!r} did not answer {what} "
                    f"(got {len(out)} of {n} bytes); check power and `baud_rate` in {self.source}"
                )
            out += ser.read(n - len(out))
        return bytes(out)

    def _command(self, ser: Any, cmd: int, data_type: int, length: int, what: str) -> bytes:
        ser.write(rp.request(cmd))
        desc = self._read_exact(ser, rp.DESCRIPTOR_LEN, what)
        try:
            got_len, _mode, got_type = rp.parse_descriptor(desc)
        except ValueError as e:
            raise ProtocolError(f"RPLIDAR on {self.config.port!r}: {e} (answering {what})") from e
        if got_type != data_type or got_len != length:
            raise ProtocolError(
                f"RPLIDAR on {self.config.port!r}: {what} answered type 0x{got_type:02x} length {got_len}, "
                f"expected 0x{data_type:02x} length {length}"
            )
        return self._read_exact(ser, length, what) if length and cmd != rp.Cmd.SCAN else b""

    def _connect(self) -> None:
        c = self.config
        ser = open_serial(c.port, c.baud_rate, timeout_s=c.read_timeout_s, source=self.source)
        try:
            ser.write(rp.request(rp.Cmd.STOP))
            time.sleep(0.01)  # the device needs >= 1 ms after STOP
            ser.reset_input_buffer()
            health = rp.DeviceHealth.parse(
                self._command(ser, rp.Cmd.GET_HEALTH, rp.DataType.HEALTH, 3, "GET_HEALTH")
            )
            if health.status == 2:
                ser.write(rp.request(rp.Cmd.RESET))
                raise DeviceNotConnectedError(
                    f"RPLIDAR on {c.port!r} reports a hardware error (code {health.error_code}); "
                    "it was sent RESET: power-cycle it if the error persists"
                )
            self.health_status = health
            self.info = rp.DeviceInfo.parse(
                self._command(ser, rp.Cmd.GET_INFO, rp.DataType.INFO, 20, "GET_INFO")
            )
            if c.motor_control:
                self.motor_control_supported = set_dtr(ser, False)  # DTR low: motor on (A1)
            self._command(ser, rp.Cmd.SCAN, rp.DataType.SCAN, 5, "SCAN")
        except BaseException:
            ser.close()
            raise
        self._ser = ser
        self.scanner.reset()  # counters accumulate across reconnects

    @property
    def node_stats(self) -> RplidarNodeStats:
        """Nodes decoded and rejected by kind, spikes, ignored start flags, turns."""
        return self.scanner.stats

    def _disconnect(self) -> None:
        ser = self._ser
        if ser is not None:
            try:
                ser.write(rp.request(rp.Cmd.STOP))
                if self.config.motor_control:
                    set_dtr(ser, True)  # motor off
            except Exception:
                pass
        self._close_port()

    def _poll(self) -> None:
        ser = self._ser
        if ser is None:
            raise DeviceNotConnectedError(f"RPLIDAR on {self.config.port!r} is not connected")
        data = ser.read(max(5, ser.in_waiting))
        if not data:
            return
        host_ns = self.clock.now_ns()
        self._c.bytes += len(data)
        sc = self.scanner
        n_nodes, revs = sc.feed(data)
        d = sc.decoder
        self._c.frames, self._c.checksum_errors, self._c.resyncs = (
            d.frames,
            d.checksum_errors + sc.spikes,
            d.resyncs,
        )
        if not revs:
            return
        # Several turns can arrive in one read (a stalled reader): stamp each at its end, i.e.
        # the receive time minus the nodes that came after it, at the measured node period.
        node_ns = self._specs[0].period_ns / max(1, len(revs[-1][0]))
        stamps = [host_ns - round((n_nodes - end) * node_ns) for _, _, end in revs]
        last = self._last_stamp_ns
        if stamps[0] <= last:  # a backlog older than the previous scan: spread it up to now
            step = (host_ns - last) / len(stamps)
            stamps = [round(last + (k + 1) * step) for k in range(len(stamps))]
        for (angles, dists, _), t_ns in zip(revs, stamps, strict=True):
            self._emit(angles, dists, t_ns)
            self._last_stamp_ns = t_ns


@register_driver("ld06")
class LD06Driver(_LidarDriver):
    """LDROBOT LD06/LD19: ``(N, 3) float32`` points per revolution, stamped by device time."""

    Config = LD06Config
    config: LD06Config

    def __init__(self, config: LD06Config, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.decoder = ld06_proto.LD06Decoder()
        from mmrobot.sync import ClockModel

        self.clock_model = ClockModel()
        self._ts_prev: int | None = None
        self._device_ms = 0
        self._scan_end_device_ns = 0

    def _connect(self) -> None:
        c = self.config
        ser = open_serial(c.port, c.baud_rate, timeout_s=c.read_timeout_s, source=self.source)
        ser.reset_input_buffer()  # the LD06 streams on power-up: drop what queued up
        self._ser = ser
        self.decoder.reset()
        self.assembler.reset()
        self.clock_model.reset()
        self._ts_prev = None

    def _disconnect(self) -> None:
        self._close_port()

    def _poll(self) -> None:
        ser = self._ser
        if ser is None:
            raise DeviceNotConnectedError(f"LD06 on {self.config.port!r} is not connected")
        data = ser.read(max(ld06_proto.PACKET_LEN, ser.in_waiting))
        if not data:
            return
        host_ns = self.clock.now_ns()
        self._c.bytes += len(data)
        d = self.decoder
        packets = d.feed(data)
        self._c.frames, self._c.checksum_errors, self._c.resyncs = (
            d.frames,
            d.checksum_errors,
            d.resyncs,
        )
        if not packets:
            return
        n = len(packets)
        for k, pkt in enumerate(packets):
            device_ns = self._unwrap(pkt.timestamp_ms)
            # only the newest packet of a read arrived "now"; older ones were queued
            if k == n - 1:
                self.clock_model.update(device_ns, host_ns)
            for angles, dists in self.assembler.feed(pkt.angle_deg, pkt.distance_mm):
                t_ns = (
                    self.clock_model.to_host(self._scan_end_device_ns)
                    if self.clock_model.ready
                    else host_ns
                )
                self._emit(angles, dists, t_ns)
            self._scan_end_device_ns = device_ns

    def _unwrap(self, ts_ms: int) -> int:
        if self._ts_prev is not None:
            self._device_ms += (ts_ms - self._ts_prev) % ld06_proto.TIMESTAMP_WRAP_MS
        self._ts_prev = ts_ms
        return self._device_ms * 1_000_000
