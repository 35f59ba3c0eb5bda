"""Where a point of the base frame appears in a camera image (pinhole model, numpy only).

MuJoCo's camera model: the camera looks along its frame's -z axis, x points right and y up
in the image, and ``fovy`` is the vertical field of view (MuJoCo XML reference, ``camera``
element). A point ``p`` at camera-frame coordinates ``(x, y, z)`` (``z < 0`` in front of the
camera) lands at

    u = W / 2 + f * x / -z,   v = H / 2 - f * y / -z,   f = (H / 2) / tan(fovy / 2)

in pixels, ``u`` from the left edge and ``v`` from the top edge of the image as
``mujoco.Renderer.render`` returns it (row 0 on top); a pixel ``(i, j)`` covers
``[j, j + 1) x [i, i + 1)``. :meth:`mmrobot.envs.scene.Scene.camera_projection` reads a
camera's pose and field of view from the scene.

Training uses it to say where the named block is in the scene camera's image (the policy
config's ``training.camera_map``): the camera is fixed to the base, so the block's base-frame
position (the recorded ``block_rel + tcp``) fixes its pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["CameraProjection"]


@dataclass(frozen=True)
class CameraProjection:
    """A pinhole camera fixed in the base frame.

    Attributes:
        position: (3,) the camera's origin in the base frame, metres.
        rotation: (3, 3) camera-to-base rotation; its columns are the camera's x (image
            right), y (image up) and z (backwards: the camera looks along -z) axes.
        fovy_deg: vertical field of view, degrees.
        height, width: image size in pixels.
    """

    position: tuple[float, float, float]
    rotation: tuple[tuple[float, float, float], ...]
    fovy_deg: float
    height: int
    width: int

    def __post_init__(self) -> None:
        r = np.asarray(self.rotation, dtype=np.float64)
        if r.shape != (3, 3) or not np.allclose(r.T @ r, np.eye(3), atol=1e-6):
            raise ValueError(f"CameraProjection.rotation must be a 3x3 rotation matrix, got {r}")
        if not 0.0 < self.fovy_deg < 180.0:
            raise ValueError(f"CameraProjection.fovy_deg must be in (0, 180), got {self.fovy_deg}")
        if self.height < 1 or self.width < 1:
            raise ValueError(
                f"CameraProjection image size must be positive, got {self.height}x{self.width}"
            )

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (square pixels: the same for both axes)."""
        return (self.height / 2.0) / math.tan(math.radians(self.fovy_deg) / 2.0)

    def pixels(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) base-frame points (metres) -> (..., 2) float ``(u, v)`` pixel coordinates:
        ``u`` from the image's left edge, ``v`` from its top edge (see the module docstring).
        Points behind the camera give NaN."""
        p = np.asarray(points, dtype=np.float64)
        r = np.asarray(self.rotation, dtype=np.float64)
        cam = (p - np.asarray(self.position)) @ r  # camera-frame coordinates: R^T (p - c)
        depth = -cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.width / 2.0 + self.focal_px * cam[..., 0] / depth
            v = self.height / 2.0 - self.focal_px * cam[..., 1] / depth
        uv = np.stack([u, v], axis=-1)
        uv[depth <= 0] = np.nan
        return uv

    def fractions(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) base-frame points -> (..., 2) float32 image positions as fractions
        ``(u / W, v / H)`` of the image (the camera maps' targets)."""
        return (self.pixels(points) / np.array([self.width, self.height])).astype(np.float32)

    def on_plane(self, uv: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        """The inverse of :meth:`pixels` for points of known height: (..., 2) pixel
        coordinates and the height ``z`` (metres, base frame; a scalar or (...,)) -> (..., 3)
        base-frame points where each pixel's viewing ray meets the plane at that height."""
        uv = np.asarray(uv, dtype=np.float64)
        f = self.focal_px
        ray_cam = np.stack(
            [
                (uv[..., 0] - self.width / 2.0) / f,
                -(uv[..., 1] - self.height / 2.0) / f,
                -np.ones(uv.shape[:-1]),
            ],
            axis=-1,
        )
        ray = ray_cam @ np.asarray(self.rotation, dtype=np.float64).T  # camera -> base frame
        origin = np.asarray(self.position)
        t = (np.asarray(z, dtype=np.float64) - origin[2]) / ray[..., 2]
        return origin + t[..., None] * ray
