"""Shared fixtures of the calibration tests: one calibration scene per session."""

from __future__ import annotations

import pytest

pytest.importorskip("mujoco")
pytest.importorskip("cv2")

from mmrobot.calibrate.targets import CalibrationScene, build_calibration_scene  # noqa: E402

#: Where the lidar really is in the calibration tests (the rig file's guess is elsewhere).
TRUE_LIDAR_XYZ_M = (0.06, -0.04, 0.05)
TRUE_LIDAR_RPY_RAD = (0.0, 0.0, 0.35)


@pytest.fixture(scope="session")
def calibration_scene(tmp_path_factory) -> CalibrationScene:
    return build_calibration_scene(
        tmp_path_factory.mktemp("calibration_scene"),
        lidar_xyz_m=TRUE_LIDAR_XYZ_M,
        lidar_rpy_rad=TRUE_LIDAR_RPY_RAD,
    )
