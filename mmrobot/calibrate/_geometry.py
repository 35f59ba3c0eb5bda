"""Small rigid-transform helpers shared by the calibration procedures (numpy only)."""

from __future__ import annotations

import math

import numpy as np

from mmrobot.drivers.config_models import rpy_to_matrix  # the rig files' convention

__all__ = [
    "homogeneous",
    "matrix_to_rpy",
    "rotation_angle_rad",
    "rpy_to_matrix",
    "skew",
]


def skew(v: np.ndarray) -> np.ndarray:
    """(3, 3) cross-product matrix: ``skew(a) @ b == np.cross(a, b)``."""
    x, y, z = np.asarray(v, dtype=np.float64)
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def matrix_to_rpy(mat: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rpy_to_matrix` (pitch in [-pi/2, pi/2])."""
    m = np.asarray(mat, dtype=np.float64)
    pitch = math.asin(max(-1.0, min(1.0, -m[2, 0])))
    if abs(m[2, 0]) < 1.0 - 1e-9:
        roll = math.atan2(m[2, 1], m[2, 2])
        yaw = math.atan2(m[1, 0], m[0, 0])
    else:  # gimbal lock: only roll - yaw (or roll + yaw) is defined; put it all in yaw
        roll = 0.0
        yaw = math.atan2(-m[0, 1], m[1, 1])
    return roll, pitch, yaw


def rotation_angle_rad(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the rotation ``a.T @ b`` (the geodesic distance between two rotations)."""
    c = (np.trace(np.asarray(a).T @ np.asarray(b)) - 1.0) / 2.0
    return float(math.acos(max(-1.0, min(1.0, c))))


def homogeneous(rot: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(4, 4) transform from a rotation (3, 3) and a translation (3,)."""
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = np.asarray(trans, dtype=np.float64).reshape(3)
    return out
