"""A 2D room with boxes: ground truth ranges for the lidar emulators (ray casting)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Room"]


@dataclass(frozen=True)
class Room:
    """An axis-aligned rectangular room with axis-aligned boxes in it, seen from ``sensor_xy``.

    Attributes:
        size_m: (width along x, depth along y); the room spans [0, w] x [0, d].
        boxes: (x0, y0, x1, y1) obstacles.
        sensor_xy: where the lidar stands.
    """

    size_m: tuple[float, float] = (6.0, 4.0)
    boxes: tuple[tuple[float, float, float, float], ...] = field(
        default=((3.5, 1.0, 4.0, 1.6), (1.0, 2.8, 1.6, 3.3), (4.5, 3.0, 5.2, 3.4))
    )
    sensor_xy: tuple[float, float] = (2.0, 1.5)

    def ranges(self, angle_ccw_rad: np.ndarray) -> np.ndarray:
        """(M,) distances from the sensor along (M,) counter-clockwise angles from +x."""
        a = np.asarray(angle_ccw_rad, np.float64)
        dx, dy = np.cos(a), np.sin(a)
        sx, sy = self.sensor_xy
        w, d = self.size_m
        with np.errstate(divide="ignore", invalid="ignore"):
            tx = np.where(dx > 0, (w - sx) / dx, np.where(dx < 0, -sx / dx, np.inf))
            ty = np.where(dy > 0, (d - sy) / dy, np.where(dy < 0, -sy / dy, np.inf))
            best = np.minimum(tx, ty)
            for x0, y0, x1, y1 in self.boxes:
                t1x, t2x = (x0 - sx) / dx, (x1 - sx) / dx
                t1y, t2y = (y0 - sy) / dy, (y1 - sy) / dy
                tmin = np.maximum(np.minimum(t1x, t2x), np.minimum(t1y, t2y))
                tmax = np.minimum(np.maximum(t1x, t2x), np.maximum(t1y, t2y))
                hit = (tmax >= tmin) & (tmin > 0) & np.isfinite(tmin)
                best = np.where(hit & (tmin < best), tmin, best)
        return best
