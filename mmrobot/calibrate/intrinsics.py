"""Camera intrinsics from views of a ChArUco board: detection, then ``cv2.calibrateCamera``.

Follows the OpenCV documentation: "Detection of ChArUco Boards" (``cv2.aruco.CharucoDetector``
finds the markers, then interpolates the chessboard corners between them to sub-pixel
accuracy) and "Camera Calibration" (``cv2.calibrateCamera``, Zhang's method: Z. Zhang, "A
flexible new technique for camera calibration", IEEE TPAMI 22(11), 2000). The pinhole model
with distortion (k1, k2, p1, p2; k3 fixed at zero unless asked for, as the OpenCV tutorial
recommends for ordinary lenses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError

if TYPE_CHECKING:
    from mmrobot.calibrate.base import CalibrationRig
    from mmrobot.calibrate.targets import BoardSpec

__all__ = [
    "BoardView",
    "IntrinsicsResult",
    "calibrate_intrinsics",
    "collect_board_views",
    "detect_board",
    "draw_detections",
]

#: Fewest interpolated corners a view must show to be used (a homography needs 4; six
#: spread corners keep a view from being nearly degenerate).
MIN_CORNERS = 6


@dataclass(frozen=True)
class BoardView:
    """One view of the board.

    Attributes:
        joints: (6,) the arm's measured joint angles when the frame was taken.
        corners: (M, 2) float32 detected chessboard corners, pixels.
        ids: (M,) int32 their ids on the board.
        image_size: (width, height).
    """

    joints: np.ndarray
    corners: np.ndarray
    ids: np.ndarray
    image_size: tuple[int, int]


@dataclass(frozen=True)
class IntrinsicsResult:
    """What :func:`calibrate_intrinsics` measured.

    Attributes:
        camera_matrix: (3, 3) [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], pixels.
        dist_coeffs: (5,) k1, k2, p1, p2, k3.
        rms_px: RMS reprojection error over all corners.
        per_view_rms_px: (N,) the same per view.
        n_views: views used.
        image_size: (width, height) the calibration holds for.
    """

    camera_matrix: np.ndarray
    dist_coeffs: np.ndarray
    rms_px: float
    per_view_rms_px: np.ndarray
    n_views: int
    image_size: tuple[int, int]


def detect_board(image: np.ndarray, board: BoardSpec) -> tuple[np.ndarray, np.ndarray] | None:
    """Detected corners (M, 2) and ids (M,) of ``board`` in ``image`` (H, W, 3 RGB or H, W
    grey uint8), or None when fewer than :data:`MIN_CORNERS` are found."""
    cv2 = require("cv2", "ChArUco detection")
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ConfigError(f"need an (H, W) or (H, W, 3) uint8 image, got {img.dtype} {img.shape}")
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    corners, ids, _, _ = cv2.aruco.CharucoDetector(board.board()).detectBoard(grey)
    if ids is None or len(ids) < MIN_CORNERS:
        return None
    return corners.reshape(-1, 2).astype(np.float32), ids.reshape(-1).astype(np.int32)


def draw_detections(image: np.ndarray, corners: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """A copy of ``image`` (RGB) with the detected corners and their ids drawn (for docs)."""
    cv2 = require("cv2", "drawing ChArUco detections")
    out = np.ascontiguousarray(np.asarray(image).copy())
    cv2.aruco.drawDetectedCornersCharuco(
        out, corners.reshape(-1, 1, 2), ids.reshape(-1, 1), (255, 0, 0)
    )
    return out


def collect_board_views(
    rig: CalibrationRig, camera: str, poses: np.ndarray, board: BoardSpec
) -> tuple[list[BoardView], int]:
    """Move through ``poses`` (N, 6), grab a frame of ``camera`` at rest in each, detect the
    board. Returns the views with a detection and the number of poses without one."""
    views, missed = [], 0
    for q in np.asarray(poses, dtype=np.float64):
        rig.move_arm(q)
        joints = rig.read_joints()
        image = rig.capture(camera)
        found = detect_board(image, board)
        if found is None:
            missed += 1
            continue
        h, w = image.shape[:2]
        views.append(BoardView(joints, found[0], found[1], (w, h)))
    return views, missed


def calibrate_intrinsics(
    views: list[BoardView], board: BoardSpec, *, fit_k3: bool = False
) -> IntrinsicsResult:
    """``cv2.calibrateCamera`` over the views.

    Raises:
        ConfigError: fewer than 3 views, or views of different image sizes.
    """
    cv2 = require("cv2", "camera calibration")
    if len(views) < 3:
        raise ConfigError(
            f"camera-intrinsics needs at least 3 views with the board detected, got "
            f"{len(views)}; check that the board is in view and lit, or add poses"
        )
    sizes = {v.image_size for v in views}
    if len(sizes) != 1:
        raise ConfigError(f"views have different image sizes {sorted(sizes)}; use one capture mode")
    (size,) = sizes
    grid = np.asarray(board.board().getChessboardCorners(), dtype=np.float32)
    obj = [grid[v.ids] for v in views]
    img = [v.corners.reshape(-1, 1, 2) for v in views]
    flags = 0 if fit_k3 else cv2.CALIB_FIX_K3
    rms, k, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, size, None, None, flags=flags)
    per_view = []
    for o, i, r, t in zip(obj, img, rvecs, tvecs, strict=True):
        proj, _ = cv2.projectPoints(o, r, t, k, dist)
        per_view.append(float(np.sqrt(np.mean(np.sum((proj - i) ** 2, axis=2)))))
    return IntrinsicsResult(
        camera_matrix=np.asarray(k, dtype=np.float64),
        dist_coeffs=np.asarray(dist, dtype=np.float64).reshape(-1)[:5],
        rms_px=float(rms),
        per_view_rms_px=np.asarray(per_view),
        n_views=len(views),
        image_size=size,
    )
