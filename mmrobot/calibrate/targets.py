"""Calibration targets: the ChArUco board and the lidar box, and the simulation scene that has them.

The default training scene (``envs/tabletop.xml``) is left as it is: :func:`build_calibration_scene`
loads it with ``mujoco.MjSpec``, adds the targets, parks the blocks on the floor out of the
sensors' way and (optionally) moves the lidar, and writes the result as a separate MJCF.

ChArUco board: OpenCV's ``cv2.aruco.CharucoBoard`` (OpenCV docs, "Detection of ChArUco Boards"),
a chessboard whose white squares hold ArUco markers, so each corner has an identity and a
partly hidden board still yields its visible corners with no orientation ambiguity.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.calibrate._geometry import homogeneous, rpy_to_matrix
from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.envs import names

__all__ = [
    "BoardSpec",
    "CalibrationScene",
    "LidarBoxSpec",
    "build_calibration_scene",
]

#: Texture pixels per board square (the rendered board is sharp at the cameras' distances).
_PX_PER_SQUARE = 120


@dataclass(frozen=True)
class BoardSpec:
    """A ChArUco board lying on the table (or wherever ``pose`` puts it).

    Attributes:
        squares: (columns, rows) of chessboard squares.
        square_m: side of one square.
        marker_m: side of the ArUco marker inside a white square.
        dictionary: an OpenCV predefined ArUco dictionary name.
        center_m: board centre in the base frame.
        yaw_rad: rotation of the board about the base z axis.
    """

    squares: tuple[int, int] = (7, 5)
    square_m: float = 0.04
    marker_m: float = 0.03
    dictionary: str = "DICT_4X4_50"
    center_m: tuple[float, float, float] = (0.45, 0.0, 0.001)
    yaw_rad: float = 0.0

    def __post_init__(self) -> None:
        if min(self.squares) < 3:
            raise ConfigError(f"a ChArUco board needs at least 3 x 3 squares, got {self.squares}")
        if not (0 < self.marker_m < self.square_m):
            raise ConfigError(
                f"marker side {self.marker_m} m must be positive and smaller than the square "
                f"side {self.square_m} m"
            )

    @property
    def size_m(self) -> tuple[float, float]:
        return self.squares[0] * self.square_m, self.squares[1] * self.square_m

    def board(self) -> Any:
        """The ``cv2.aruco.CharucoBoard``."""
        cv2 = require("cv2", "ChArUco calibration targets")
        try:
            dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        except AttributeError as e:
            raise ConfigError(
                f"unknown ArUco dictionary {self.dictionary!r}; use one of OpenCV's, e.g. "
                "'DICT_4X4_50' or 'DICT_5X5_100'"
            ) from e
        return cv2.aruco.CharucoBoard(self.squares, self.square_m, self.marker_m, dictionary)

    def image(self) -> np.ndarray:
        """(H, W) uint8 picture of the board, one square per ``_PX_PER_SQUARE`` pixels."""
        w = self.squares[0] * _PX_PER_SQUARE
        h = self.squares[1] * _PX_PER_SQUARE
        return np.asarray(self.board().generateImage((w, h), marginSize=0, borderBits=1))

    def board_to_base(self) -> np.ndarray:
        """(4, 4) pose of the board's object frame (OpenCV's: origin at the top-left corner of
        the picture, x along its columns, y down its rows, z into the board) in the base frame."""
        w, h = self.size_m
        # board picture seen from above: columns along +x, rows along -y of the board frame
        r = rpy_to_matrix((0.0, 0.0, self.yaw_rad)) @ np.diag([1.0, -1.0, -1.0])
        corner = np.asarray(self.center_m) + r @ np.array([-w / 2, -h / 2, 0.0])
        return homogeneous(r, corner)


@dataclass(frozen=True)
class LidarBoxSpec:
    """A box standing on the table in the lidar's scan plane.

    Attributes:
        size_m: (x, y, z) full extents.
        center_xy_m: centre on the table, base frame.
        yaw_rad: rotation about z (two faces are seen from the lidar when it is turned).
    """

    size_m: tuple[float, float, float] = (0.30, 0.20, 0.12)
    center_xy_m: tuple[float, float] = (0.30, -0.40)
    yaw_rad: float = -0.2

    def outline(self) -> np.ndarray:
        """(4, 2) corners of the box's footprint in the base frame, counter-clockwise."""
        hx, hy = self.size_m[0] / 2, self.size_m[1] / 2
        c, s = math.cos(self.yaw_rad), math.sin(self.yaw_rad)
        local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        return local @ np.array([[c, s], [-s, c]]) + np.asarray(self.center_xy_m)


@dataclass(frozen=True)
class CalibrationScene:
    """What :func:`build_calibration_scene` wrote: the MJCF path and the targets in it."""

    path: Path
    board: BoardSpec
    box: LidarBoxSpec


def build_calibration_scene(
    directory: str | os.PathLike[str],
    *,
    board: BoardSpec | None = None,
    box: LidarBoxSpec | None = None,
    lidar_xyz_m: tuple[float, float, float] | None = None,
    lidar_rpy_rad: tuple[float, float, float] = (0.0, 0.0, 0.0),
    base_scene: str | os.PathLike[str] | None = None,
) -> CalibrationScene:
    """Write ``calibration.xml`` (and the board texture) into ``directory``.

    Args:
        directory: output folder (created).
        board: the ChArUco board (default :class:`BoardSpec`).
        box: the lidar target (default :class:`LidarBoxSpec`).
        lidar_xyz_m, lidar_rpy_rad: where to mount the lidar (default: where the base scene
            has it), e.g. to test that calibration finds a lidar that is not where the rig
            file says.
        base_scene: the MJCF to start from (default ``envs/tabletop.xml``).
    """
    from mmrobot.envs.scene import DEFAULT_SCENE_PATH, choose_gl_backend

    choose_gl_backend()
    mj = require("mujoco", "the calibration scene")
    cv2 = require("cv2", "the ChArUco board texture")
    board = board or BoardSpec()
    box = box or LidarBoxSpec()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    spec = mj.MjSpec.from_file(str(base_scene or DEFAULT_SCENE_PATH))
    # antialiased renders: corners are located to a fraction of a pixel
    spec.visual.quality.offsamples = 4

    png = out / "charuco_board.png"
    img = board.image()
    # MuJoCo puts a 2D texture's first row at the plane's +y edge, first column at -x: seen
    # from above the picture reads as board.image(), columns along +x, rows along -y
    cv2.imwrite(str(png), img)
    tex = spec.add_texture()
    tex.name = "charuco_tex"
    tex.type = mj.mjtTexture.mjTEXTURE_2D
    tex.file = str(png.resolve())
    mat = spec.add_material()
    mat.name = "charuco_mat"
    mat.textures[mj.mjtTextureRole.mjTEXROLE_RGB] = "charuco_tex"
    mat.texrepeat = [1.0, 1.0]
    mat.texuniform = False
    w, h = board.size_m
    g = spec.worldbody.add_geom()
    g.name = "calib_board"
    g.type = mj.mjtGeom.mjGEOM_PLANE
    g.size = [w / 2, h / 2, 0.01]
    g.pos = list(board.center_m)
    g.quat = [math.cos(board.yaw_rad / 2), 0.0, 0.0, math.sin(board.yaw_rad / 2)]
    g.material = "charuco_mat"
    g.contype = 0
    g.conaffinity = 0

    b = spec.worldbody.add_geom()
    b.name = "calib_lidar_box"
    b.type = mj.mjtGeom.mjGEOM_BOX
    b.size = [box.size_m[0] / 2, box.size_m[1] / 2, box.size_m[2] / 2]
    b.pos = [box.center_xy_m[0], box.center_xy_m[1], box.size_m[2] / 2]
    b.quat = [math.cos(box.yaw_rad / 2), 0.0, 0.0, math.sin(box.yaw_rad / 2)]
    b.rgba = [0.8, 0.8, 0.75, 1.0]
    b.contype = 0
    b.conaffinity = 0

    # the blocks wait on the floor, below the table top: out of every target's way
    for k, (color, size) in enumerate((c, s) for c in names.COLORS for s in names.SIZES):
        body = spec.body(names.block_body(color, size))
        body.pos = [1.2 + 0.1 * k, 0.9, -0.7]

    site = spec.site(names.LIDAR_SITE)
    if lidar_xyz_m is not None:
        site.pos = list(lidar_xyz_m)
    r = rpy_to_matrix(lidar_rpy_rad)
    quat = np.zeros(4)
    mj.mju_mat2Quat(quat, r.reshape(-1))
    site.quat = quat.tolist()
    spec.compile()  # raises on a bad spec, before anything is written
    path = out / "calibration.xml"
    path.write_text(spec.to_xml(), encoding="utf-8")
    return CalibrationScene(path, board, box)
