"""Lidar-to-base from planar scans of a box of known pose (x, y, yaw of the lidar).

The box stands on the table at a pose measured in the base frame (in simulation: the scene's;
on a robot: placed against marks), tall enough to cross the scan plane. Points of several
scans, taken in the lidar's own frame, are registered to the box's outline by a trimmed
point-to-line ICP (A. Censi, "An ICP variant using a point-to-line metric", ICRA 2008; the
point-to-plane metric of Chen and Medioni 1992 in 2D): each point is paired with the nearest
edge of the outline, and Gauss-Newton steps on (x, y, yaw) minimise the distances along the
edges' normals; pairs farther than a shrinking threshold are dropped, so other objects in the
scan (the bin, the arm) do not pull the fit. Two faces of the box seen at an angle fix all
three unknowns.

A planar scan of vertical faces says nothing about the lidar's height, roll or pitch: those
are kept from the rig file (measure the height with a ruler). The rig file's pose is also the
starting guess; it must be within about 5 cm and 15 degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.core.errors import ConfigError

if TYPE_CHECKING:
    from mmrobot.calibrate.base import CalibrationRig

__all__ = ["LidarResult", "collect_scans", "fit_lidar_to_box"]


@dataclass(frozen=True)
class LidarResult:
    """The lidar's planar pose in the base frame.

    Attributes:
        xy_m: (2,) position.
        yaw_rad: heading of the lidar's x axis.
        residual_m: RMS point-to-outline distance of the points kept.
        n_points: points kept in the last iteration.
        n_scans: scans used.
        faces: box faces with at least 10 points (2 are needed).
    """

    xy_m: np.ndarray
    yaw_rad: float
    residual_m: float
    n_points: int
    n_scans: int
    faces: int


def collect_scans(rig: CalibrationRig, n_scans: int) -> list[np.ndarray]:
    """``n_scans`` lidar turns (each (N, 2), lidar frame) with the arm where it is."""
    return [np.asarray(rig.scan(), dtype=np.float64) for _ in range(n_scans)]


def _nearest_edges(
    p: np.ndarray, outline: np.ndarray, end_margin_m: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For points (M, 2): the index of the nearest outline edge, the distance to it (inf for
    points whose foot lies within ``end_margin_m`` of a corner: which face they belong to is
    ambiguous there) and that edge's unit outward normal (M, 2)."""
    a = outline
    b = np.roll(outline, -1, axis=0)
    d = b - a
    length2 = np.sum(d * d, axis=1)
    t = np.clip(np.einsum("mkj,kj->mk", p[:, None, :] - a[None], d) / length2, 0.0, 1.0)
    closest = a[None] + t[..., None] * d[None]
    dist = np.linalg.norm(p[:, None, :] - closest, axis=2)
    k = np.argmin(dist, axis=1)
    length = np.sqrt(length2)
    along = t[np.arange(len(p)), k] * length[k]
    near_corner = (along < end_margin_m) | (along > length[k] - end_margin_m)
    normal = np.stack([d[:, 1], -d[:, 0]], axis=1) / np.sqrt(length2)[:, None]  # CCW outline
    d_k = np.where(near_corner, np.inf, dist[np.arange(len(p)), k])
    return k, d_k, normal[k]


def fit_lidar_to_box(
    scans: list[np.ndarray],
    outline: np.ndarray,
    guess_xy_m: np.ndarray,
    guess_yaw_rad: float,
    *,
    iterations: int = 40,
    thresholds_m: tuple[float, ...] = (0.12, 0.06, 0.03, 0.015),
    corner_margin_m: float = 0.015,
) -> LidarResult:
    """Fit the lidar's (x, y, yaw) so that the scans lie on the box outline.

    Args:
        scans: lidar turns, each (N, 2) in the lidar frame (NaN: no return).
        outline: (4, 2) the box footprint's corners in the base frame, counter-clockwise.
        guess_xy_m, guess_yaw_rad: the starting pose (the rig file's extrinsics).
        iterations: Gauss-Newton steps per threshold at most.
        thresholds_m: the shrinking pairing distances.
        corner_margin_m: points this close to a box corner are not used.

    Raises:
        ConfigError: no scans or outline of the wrong shape, or fewer than two faces of the
            box seen (the pose is then not determined).
    """
    box = np.asarray(outline, dtype=np.float64)
    if box.shape != (4, 2):
        raise ConfigError(f"the box outline must be 4 corners (4, 2), got {box.shape}")
    if not scans:
        raise ConfigError("lidar calibration needs at least one scan")
    pts = np.vstack([np.asarray(s, dtype=np.float64).reshape(-1, 2) for s in scans])
    pts = pts[np.isfinite(pts).all(axis=1) & (np.linalg.norm(pts, axis=1) > 1e-6)]
    x = np.array([*np.asarray(guess_xy_m, dtype=np.float64), float(guess_yaw_rad)])
    keep = np.zeros(len(pts), dtype=bool)
    res = np.zeros(0)
    k = np.zeros(0, dtype=np.int64)
    for thr in thresholds_m:
        for _ in range(iterations):
            c, s = math.cos(x[2]), math.sin(x[2])
            r = np.array([[c, -s], [s, c]])
            world = pts @ r.T + x[:2]
            k, dist, n = _nearest_edges(world, box, corner_margin_m)
            keep = dist < thr
            if keep.sum() < 6:
                break
            a, b = box[k[keep]], n[keep]
            res = np.einsum("mj,mj->m", world[keep] - a, b)  # signed distance along the normal
            dr = pts[keep] @ np.array([[-s, -c], [c, -s]]).T  # d(world)/d(yaw)
            jac = np.column_stack([b, np.einsum("mj,mj->m", b, dr)])
            step, *_ = np.linalg.lstsq(jac, -res, rcond=None)
            x = x + step
            if np.abs(step).max() < 1e-7:
                break
    faces = int(sum(np.count_nonzero(k[keep] == f) >= 10 for f in range(4))) if keep.any() else 0
    if faces < 2:
        raise ConfigError(
            f"lidar calibration: the scans show {faces} face(s) of the box near where the rig "
            "file puts it (2 needed); turn the box so two faces face the lidar, check that it "
            "crosses the scan plane, and that the rig file's lidar pose is within ~5 cm and "
            "~15 degrees"
        )
    return LidarResult(
        xy_m=x[:2].copy(),
        yaw_rad=float(math.atan2(math.sin(x[2]), math.cos(x[2]))),
        residual_m=float(np.sqrt(np.mean(res**2))),
        n_points=int(keep.sum()),
        n_scans=len(scans),
        faces=faces,
    )
