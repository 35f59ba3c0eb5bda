"""Hand-eye calibration (eye-in-hand): the camera's pose in the TCP frame, AX = XB.

With ``G_i`` the TCP pose in the base frame (forward kinematics of the measured joints) and
``T_i`` the board pose in the camera frame (``cv2.solvePnP`` on the detected corners, with
the calibrated intrinsics) at view ``i``, a board fixed in the base frame gives, for every
pair of views, ``A X = X B`` with ``A = G_j^-1 G_i``, ``B = T_j T_i^-1`` and ``X`` the camera
in the TCP frame. Two classic solvers, as in OpenCV's ``calibrateHandEye`` (whose Python
binding is absent from the OpenCV 5.0 wheels this project installs; see the note below):

- ``"tsai"``: R. Tsai and R. Lenz, "A new technique for fully autonomous and efficient 3D
  robotics hand/eye calibration", IEEE Trans. Robotics and Automation 5(3), 1989:
  rotation from the modified Rodrigues vectors of each pair by linear least squares,
  then translation by linear least squares.
- ``"park"``: F. Park and B. Martin, "Robot sensor calibration: solving AX = XB on the
  Euclidean group", IEEE Trans. Robotics and Automation 10(5), 1994: rotation as the
  orthogonal Procrustes solution ``R = (M^T M)^(-1/2) M^T`` over the rotation logarithms,
  translation as Tsai-Lenz.

When ``cv2.calibrateHandEye`` exists (OpenCV 4.x) :func:`solve_hand_eye` with
``method="opencv-tsai"`` / ``"opencv-park"`` calls it instead, for comparison.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.calibrate._geometry import homogeneous, rotation_angle_rad, skew
from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError, DependencyNotInstalled

if TYPE_CHECKING:
    from mmrobot.calibrate.intrinsics import BoardView
    from mmrobot.calibrate.kinematics import ArmFrames
    from mmrobot.calibrate.targets import BoardSpec

__all__ = ["METHODS", "HandEyeResult", "board_poses", "solve_hand_eye", "calibrate_hand_eye"]

METHODS = ("tsai", "park", "opencv-tsai", "opencv-park")


@dataclass(frozen=True)
class HandEyeResult:
    """The camera's pose in the TCP frame by one method.

    Attributes:
        method: solver name.
        camera_in_tcp: (4, 4) the camera's OpenCV frame (x right, y down, z forward) in the
            TCP frame.
        residual_rotation_rad: RMS over pairs of the rotation error of ``A X`` vs ``X B``.
        residual_translation_m: RMS over pairs of the translation error.
        board_spread_m: RMS scatter of the board position in the base frame implied by each
            view (zero when everything agrees: a consistency check free of ground truth).
        n_views: views used.
    """

    method: str
    camera_in_tcp: np.ndarray
    residual_rotation_rad: float
    residual_translation_m: float
    board_spread_m: float
    n_views: int


def _log_rotation(r: np.ndarray) -> np.ndarray:
    """Rotation vector of a rotation matrix (axis times angle)."""
    c = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    theta = float(np.arccos(c))
    if theta < 1e-10:
        return np.zeros(3)
    w = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    return w * theta / (2.0 * np.sin(theta))


def _pairs(g: np.ndarray, t: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(A, B) for every pair of views whose relative rotation is not tiny."""
    out = []
    for i, j in itertools.combinations(range(len(g)), 2):
        a = np.linalg.inv(g[j]) @ g[i]
        b = t[j] @ np.linalg.inv(t[i])
        if rotation_angle_rad(np.eye(3), a[:3, :3]) > np.deg2rad(2.0):
            out.append((a, b))
    return out


def _translation(pairs: list[tuple[np.ndarray, np.ndarray]], rx: np.ndarray) -> np.ndarray:
    """(R_A - I) t_X = R_X t_B - t_A, stacked, by least squares (Tsai-Lenz, eq. 15)."""
    lhs = np.vstack([a[:3, :3] - np.eye(3) for a, _ in pairs])
    rhs = np.concatenate([rx @ b[:3, 3] - a[:3, 3] for a, b in pairs])
    tx, *_ = np.linalg.lstsq(lhs, rhs, rcond=None)
    return tx


def _tsai(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    rows, rhs = [], []
    for a, b in pairs:
        pa = _log_rotation(a[:3, :3])
        pb = _log_rotation(b[:3, :3])
        # modified Rodrigues vectors 2 sin(theta / 2) * axis
        pa = 2.0 * np.sin(np.linalg.norm(pa) / 2) * pa / np.linalg.norm(pa)
        pb = 2.0 * np.sin(np.linalg.norm(pb) / 2) * pb / np.linalg.norm(pb)
        rows.append(skew(pa + pb))
        rhs.append(pb - pa)
    p_prime, *_ = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)
    p = 2.0 * p_prime / np.sqrt(1.0 + p_prime @ p_prime)
    n2 = p @ p
    rx = (1.0 - n2 / 2.0) * np.eye(3) + 0.5 * (np.outer(p, p) + np.sqrt(4.0 - n2) * skew(p))
    return homogeneous(rx, _translation(pairs, rx))


def _park(pairs: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    m = np.zeros((3, 3))
    for a, b in pairs:
        m += np.outer(_log_rotation(b[:3, :3]), _log_rotation(a[:3, :3]))
    # (M^T M)^(-1/2) M^T via the eigen-decomposition of the symmetric M^T M
    evals, evecs = np.linalg.eigh(m.T @ m)
    if evals.min() <= 1e-12:
        raise ConfigError(
            "hand-eye (park): the view rotations are about too few axes; use poses that tilt "
            "the camera in different directions"
        )
    rx = evecs @ np.diag(evals**-0.5) @ evecs.T @ m.T
    return homogeneous(rx, _translation(pairs, rx))


def _opencv(g: np.ndarray, t: np.ndarray, method: str) -> np.ndarray:
    cv2 = require("cv2", "hand-eye calibration")
    fn = getattr(cv2, "calibrateHandEye", None)
    if fn is None:
        raise DependencyNotInstalled(
            f"cv2.calibrateHandEye is not in this OpenCV ({cv2.__version__}); use method "
            "'tsai' or 'park' (this module's implementations), or install opencv 4.x"
        )
    flag = cv2.CALIB_HAND_EYE_TSAI if method == "opencv-tsai" else cv2.CALIB_HAND_EYE_PARK
    r, tr = fn(
        [x[:3, :3] for x in g], [x[:3, 3] for x in g], [x[:3, :3] for x in t],
        [x[:3, 3] for x in t], method=flag,
    )  # fmt: skip
    return homogeneous(np.asarray(r), np.asarray(tr).reshape(3))


def solve_hand_eye(
    tcp_in_base: np.ndarray, board_in_camera: np.ndarray, method: str = "park"
) -> HandEyeResult:
    """Solve ``A X = X B`` for the camera pose in the TCP frame.

    Args:
        tcp_in_base: (N, 4, 4) TCP poses ``G_i``.
        board_in_camera: (N, 4, 4) board poses ``T_i`` in the camera frame.
        method: one of :data:`METHODS`.

    Raises:
        ConfigError: an unknown method, fewer than 3 views, or too little rotation between them.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown hand-eye method {method!r}; use one of {list(METHODS)}")
    g = np.asarray(tcp_in_base, dtype=np.float64)
    t = np.asarray(board_in_camera, dtype=np.float64)
    if g.shape != t.shape or g.ndim != 3 or g.shape[1:] != (4, 4):
        raise ConfigError(f"need two (N, 4, 4) pose stacks, got {g.shape} and {t.shape}")
    if len(g) < 3:
        raise ConfigError(f"hand-eye needs at least 3 views, got {len(g)}")
    pairs = _pairs(g, t)
    if len(pairs) < 2:
        raise ConfigError(
            "hand-eye: the views barely rotate relative to each other; tilt and roll the "
            "camera between views (camera_view_poses does)"
        )
    if method == "tsai":
        x = _tsai(pairs)
    elif method == "park":
        x = _park(pairs)
    else:
        x = _opencv(g, t, method)
    rot_err, tr_err = [], []
    for a, b in pairs:
        lhs, rhs = a @ x, x @ b
        rot_err.append(rotation_angle_rad(lhs[:3, :3], rhs[:3, :3]))
        tr_err.append(np.linalg.norm(lhs[:3, 3] - rhs[:3, 3]))
    board = np.array([(gi @ x @ ti)[:3, 3] for gi, ti in zip(g, t, strict=True)])
    spread = float(np.sqrt(np.mean(np.sum((board - board.mean(axis=0)) ** 2, axis=1))))
    return HandEyeResult(
        method=method,
        camera_in_tcp=x,
        residual_rotation_rad=float(np.sqrt(np.mean(np.square(rot_err)))),
        residual_translation_m=float(np.sqrt(np.mean(np.square(tr_err)))),
        board_spread_m=spread,
        n_views=len(g),
    )


def board_poses(
    views: list[BoardView],
    board: BoardSpec,
    camera_matrix: np.ndarray,
    dist_coeffs: np.ndarray,
) -> np.ndarray:
    """(N, 4, 4) board pose in the camera frame per view (``cv2.solvePnP``, iterative
    Levenberg-Marquardt on the reprojection error)."""
    cv2 = require("cv2", "board pose estimation")
    grid = np.asarray(board.board().getChessboardCorners(), dtype=np.float64)
    out = []
    for v in views:
        ok, rvec, tvec = cv2.solvePnP(
            grid[v.ids], v.corners.astype(np.float64), camera_matrix, dist_coeffs,
            flags=cv2.SOLVEPNP_ITERATIVE,
        )  # fmt: skip
        if not ok:
            raise ConfigError("solvePnP failed on a view; its corners are degenerate")
        out.append(homogeneous(cv2.Rodrigues(rvec)[0], tvec.reshape(3)))
    return np.asarray(out)


def calibrate_hand_eye(
    views: list[BoardView],
    board: BoardSpec,
    frames: ArmFrames,
    camera_matrix: np.ndarray,
    dist_coeffs: np.ndarray,
    methods: tuple[str, ...] = ("tsai", "park"),
) -> list[HandEyeResult]:
    """Hand-eye from board views taken by the arm-mounted camera, one result per method."""
    t = board_poses(views, board, camera_matrix, dist_coeffs)
    g = np.asarray([frames.tcp(v.joints) for v in views])
    return [solve_hand_eye(g, t, m) for m in methods]
