"""Pydantic models of rig-file entries: stream overrides, extrinsics, driver and actuator fields.

Split out of :mod:`mmrobot.drivers.base`, which re-exports every name here.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ActuatorConfig",
    "rpy_to_matrix",
    "CalibrationRecord",
    "CameraIntrinsics",
    "DriverConfig",
    "Extrinsics",
    "RigModel",
    "StreamConfig",
]


class RigModel(BaseModel):
    """Base of every rig-file model: unknown keys are errors, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamConfig(RigModel):
    """Overrides of one stream's spec in a rig file (``stream = { name = "ft", ... }``).

    Every field but ``name`` defaults to the driver kind's default for that stream.
    """

    name: str | None = None
    shape: tuple[int, ...] | None = None
    rate_hz: float | None = Field(default=None, gt=0)
    policy: Literal["nearest", "causal", "interp"] | None = None
    max_age_ms: float | None = Field(default=None, gt=0)
    latency_ms: float = Field(default=0.0, ge=0)
    history: int | None = Field(default=None, ge=1)
    optional: bool | None = None


def rpy_to_matrix(rpy: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    """(3, 3) rotation of roll, pitch, yaw about fixed x, y, z (R = Rz @ Ry @ Rx), the rig
    files' convention."""
    r, p, y = (float(a) for a in rpy)
    cr, sr, cp, sp, cy, sy = (
        math.cos(r),
        math.sin(r),
        math.cos(p),
        math.sin(p),
        math.cos(y),
        math.sin(y),
    )
    return np.array(
        [
            [cy * cp, cy * sp * sr - sy * cr, cy * sp * cr + sy * sr],
            [sy * cp, sy * sp * sr + cy * cr, sy * sp * cr - cy * sr],
            [-sp, cp * sr, cp * cr],
        ]
    )


class Extrinsics(RigModel):
    """Pose of the sensor frame in the robot base frame: ``p_base = R @ p_sensor + t``.

    ``rotation_rpy_rad`` is roll, pitch, yaw about the fixed x, y, z axes (R = Rz @ Ry @ Rx).
    ``parent_frame = "tcp"`` says the pose is in the tool centre point's frame instead (a
    wrist camera, as ``mmrobot calibrate hand-eye`` measures it); then ``p_tcp = R @ p + t``.
    A camera's frame is OpenCV's (x right, y down, z forward).
    """

    translation_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation_rpy_rad: tuple[float, float, float] = (0.0, 0.0, 0.0)
    parent_frame: Literal["base", "tcp"] = "base"

    def rotation(self) -> np.ndarray:
        """(3, 3) float64 rotation matrix, sensor -> base."""
        return rpy_to_matrix(self.rotation_rpy_rad)

    def matrix(self) -> np.ndarray:
        """(4, 4) float64 homogeneous transform, sensor -> base."""
        out = np.eye(4)
        out[:3, :3] = self.rotation()
        out[:3, 3] = self.translation_m
        return out

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (N, 3) sensor-frame points to the base frame (float64)."""
        return np.asarray(points, dtype=np.float64) @ self.rotation().T + np.asarray(
            self.translation_m
        )


class CameraIntrinsics(RigModel):
    """A camera's pinhole model at one capture resolution (``mmrobot calibrate camera-intrinsics``).

    ``camera_matrix`` is [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels (OpenCV's pixel
    centres); ``dist_coeffs`` OpenCV's k1, k2, p1, p2, k3.
    """

    image_size: tuple[int, int]
    camera_matrix: tuple[
        tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]
    ]
    dist_coeffs: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)


class CalibrationRecord(RigModel):
    """How one calibration of an entry was measured (``mmrobot calibrate`` writes it)."""

    date: str
    views: int = Field(ge=0)
    residuals: dict[str, float] = Field(default_factory=dict)
    method: str = ""


class DriverConfig(RigModel):
    """Fields every driver entry has; each driver kind extends it with its own."""

    kind: str
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    enabled: bool = True  # false: validated but not built (e.g. one of two alternative lidars)
    stream: StreamConfig = StreamConfig()
    extrinsics: Extrinsics = Extrinsics()
    reconnect_min_s: float = Field(default=0.05, gt=0)
    reconnect_max_s: float = Field(default=2.0, gt=0)
    # procedure name ("ft-payload", "hand-eye", ...) -> how the values above were measured
    calibration: dict[str, CalibrationRecord] = Field(default_factory=dict)


class ActuatorConfig(RigModel):
    """Fields every actuator entry has; each actuator kind extends it with its own."""

    kind: str
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
