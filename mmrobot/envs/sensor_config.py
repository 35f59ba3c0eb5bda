"""Configuration of the simulated sensors: the default observation spec of the tabletop rig,
each stream's timing and error model (:class:`SensorConfig`), and which streams exist
(:class:`SensorSuiteConfig`). The drivers that follow it are in :mod:`mmrobot.envs.sensors`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import StreamSpec

__all__ = [
    "DERIVED_STREAMS",
    "OPTIONAL_STREAM_NAMES",
    "STREAM_NAMES",
    "SensorConfig",
    "SensorSuiteConfig",
    "default_stream_specs",
]

_MS = 1_000_000


def default_stream_specs(image_size: int = 96) -> tuple[StreamSpec, ...]:
    """The project's default observation spec of the tabletop rig (see COMMON brief)."""
    img = (image_size, image_size, 3)
    return (
        StreamSpec("scene_cam", "camera", img, "uint8", 30.0, "causal", 100 * _MS),
        StreamSpec("wrist_cam", "camera", img, "uint8", 30.0, "causal", 100 * _MS),
        StreamSpec("lidar", "lidar", (360, 3), "float32", 10.0, "causal", 250 * _MS),
        # the Robotiq FT 300 streams at about 100 Hz; window and age as in the rig files
        StreamSpec("ft", "force", (6,), "float32", 100.0, "interp", 50 * _MS, history=10),
        StreamSpec("joints", "joints", (7,), "float32", 200.0, "interp", 20 * _MS, history=10),
        # forward kinematics of the joints readings: shares their modality, rate and timing
        StreamSpec("ee_pose", "joints", (9,), "float32", 200.0, "interp", 20 * _MS, history=10),
    )


@dataclass(frozen=True)
class SensorConfig:
    """Timing and error model of one simulated stream.

    Attributes:
        enabled: whether the stream exists at all.
        latency_ns: time from measurement to arrival in the buffer (also declared as the
            stream's ``spec.latency_ns``, the correction a calibrated rig applies).
        latency_jitter_ns: uniform extra arrival delay in [0, jitter]; samples may then
            arrive out of order and are rejected and counted by the buffer, as on hardware.
        noise_std: Gaussian noise standard deviation in the stream's units (uint8 levels
            for images, metres of range for the lidar).
        bias: constant offset added to every value (scalar or per element).
        dropout: probability in [0, 1] that a sample is lost.
        rate_hz: override of the stream's sample rate.
    """

    enabled: bool = True
    latency_ns: int = 0
    latency_jitter_ns: int = 0
    noise_std: float = 0.0
    bias: float | tuple[float, ...] = 0.0
    dropout: float = 0.0
    rate_hz: float | None = None

    def __post_init__(self) -> None:
        for a in ("latency_ns", "latency_jitter_ns"):
            v = getattr(self, a)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ConfigError(f"sensor {a} must be an int >= 0 of nanoseconds, got {v!r}")
        if not (0.0 <= float(self.dropout) <= 1.0):
            raise ConfigError(f"sensor dropout must be in [0, 1], got {self.dropout!r}")
        if not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ConfigError(f"sensor noise_std must be >= 0, got {self.noise_std!r}")
        if self.rate_hz is not None and not (self.rate_hz > 0):
            raise ConfigError(f"sensor rate_hz must be > 0, got {self.rate_hz!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "sensor") -> SensorConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        kw = dict(data)
        if isinstance(kw.get("bias"), list):
            kw["bias"] = tuple(kw["bias"])
        return cls(**kw)


#: Streams the tabletop rig can produce; these are on by default.
STREAM_NAMES = ("scene_cam", "wrist_cam", "lidar", "ft", "joints", "ee_pose")
#: Streams computed from another stream's readings rather than measured: name -> source.
DERIVED_STREAMS: dict[str, str] = {"ee_pose": "joints"}
OPTIONAL_STREAM_NAMES = ("scene_cam_depth", "wrist_cam_depth", "joint_vel")


@dataclass(frozen=True)
class SensorSuiteConfig:
    """Which simulated streams exist and how each behaves.

    Attributes:
        image_size: camera images are ``(image_size, image_size, 3)``.
        sensors: stream name -> :class:`SensorConfig` (missing: defaults; the optional
            streams ``scene_cam_depth``, ``wrist_cam_depth``, ``joint_vel`` are off unless
            listed with ``enabled=True``).
        lidar_3d: use a 3D pattern (``lidar_rings`` elevation rings) instead of a planar scan.
        lidar_rays: rays per ring (the default spec's 360).
        lidar_rings: elevation rings of the 3D pattern, from -15 to +15 degrees.
        lidar_range_m: returns beyond this distance are "no return", (0, 0, 0).
    """

    image_size: int = 96
    sensors: Mapping[str, SensorConfig] = field(default_factory=dict)
    lidar_3d: bool = False
    lidar_rays: int = 360
    lidar_rings: int = 8
    lidar_range_m: float = 2.0

    def __post_init__(self) -> None:
        valid = STREAM_NAMES + OPTIONAL_STREAM_NAMES
        unknown = sorted(set(self.sensors) - set(valid))
        if unknown:
            raise ConfigError(f"unknown sensor stream(s) {unknown}; valid streams: {list(valid)}")
        if not (16 <= self.image_size <= 640):
            raise ConfigError(f"image_size must be in [16, 640], got {self.image_size}")
        if self.lidar_rays < 1 or self.lidar_rings < 1 or self.lidar_range_m <= 0:
            raise ConfigError("lidar_rays and lidar_rings must be >= 1 and lidar_range_m > 0")
        for name, source in DERIVED_STREAMS.items():
            cfg = self.config(name)
            if not cfg.enabled:
                continue
            if not self.config(source).enabled:
                raise ConfigError(
                    f"stream {name!r} is computed from the {source!r} readings, which are "
                    f"disabled; enable {source!r} or set {name!r} enabled=false"
                )
            timing = [k for k in ("latency_ns", "latency_jitter_ns", "rate_hz") if getattr(cfg, k)]
            if timing:
                raise ConfigError(
                    f"stream {name!r} takes its timing from {source!r} (it is computed from "
                    f"each {source!r} reading); set {timing} on {source!r}, not on {name!r}"
                )

    def config(self, name: str) -> SensorConfig:
        cfg = self.sensors.get(name)
        if cfg is None:
            return SensorConfig(enabled=name in STREAM_NAMES)
        return cfg

    def with_sensor(self, name: str, **changes: Any) -> SensorSuiteConfig:
        """A copy with stream ``name``'s config changed (e.g. ``dropout=1.0``)."""
        sensors = dict(self.sensors)
        sensors[name] = replace(self.config(name), **changes)
        return replace(self, sensors=sensors)

    def stream_specs(self) -> tuple[StreamSpec, ...]:
        """The specs of the enabled streams, in a fixed order."""
        out: list[StreamSpec] = []
        base = {s.name: s for s in default_stream_specs(self.image_size)}
        if self.lidar_3d:
            base["lidar"] = replace(base["lidar"], shape=(self.lidar_rays * self.lidar_rings, 3))
        else:
            base["lidar"] = replace(base["lidar"], shape=(self.lidar_rays, 3))
        hw = (self.image_size, self.image_size)
        base["scene_cam_depth"] = StreamSpec(
            "scene_cam_depth", "depth", hw, "float32", 30.0, "causal", 100 * _MS
        )
        base["wrist_cam_depth"] = StreamSpec(
            "wrist_cam_depth", "depth", hw, "float32", 30.0, "causal", 100 * _MS
        )
        base["joint_vel"] = StreamSpec(
            "joint_vel", "joints", (6,), "float32", 200.0, "interp", 20 * _MS, history=10
        )
        for name in STREAM_NAMES + OPTIONAL_STREAM_NAMES:
            cfg = self.config(name)
            if not cfg.enabled:
                continue
            cfg = self.config(DERIVED_STREAMS.get(name, name))  # a derived stream's timing
            spec = replace(base[name], latency_ns=int(cfg.latency_ns))
            if cfg.rate_hz is not None:
                spec = replace(spec, rate_hz=float(cfg.rate_hz))
            out.append(spec)
        return tuple(out)
