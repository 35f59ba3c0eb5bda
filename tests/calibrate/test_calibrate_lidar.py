"""lidar: the lidar's x, y and yaw from planar scans of the calibration box, against the
simulation's ground truth (the calibration scene mounts the lidar off where the guess says)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mmrobot.calibrate._geometry import matrix_to_rpy
from mmrobot.calibrate.lidar import collect_scans, fit_lidar_to_box
from mmrobot.calibrate.sim import SimCalibrationRig, SimNoise
from mmrobot.core.errors import ConfigError

GUESS_XY_M, GUESS_YAW_RAD = np.array([0.0, 0.0]), 0.15  # 7 cm and 11 degrees off


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lidar_to_base_meets_the_targets_in_ten_scans(calibration_scene, seed):
    # 1 cm range noise: twice the RPLIDAR A1's 1 % of range at the box's 0.45 m
    with SimCalibrationRig(calibration_scene, SimNoise(lidar_range_m=0.01, seed=seed)) as rig:
        scans = collect_scans(rig, 10)
        truth = rig.true_lidar_pose()
    result = fit_lidar_to_box(scans, calibration_scene.box.outline(), GUESS_XY_M, GUESS_YAW_RAD)
    yaw_true = matrix_to_rpy(truth[:3, :3])[2]
    assert np.hypot(*(truth[:2, 3] - GUESS_XY_M)) > 0.05  # the guess really is off
    # issue 17: translation <= 5 mm, yaw <= 0.5 degrees
    assert np.linalg.norm(result.xy_m - truth[:2, 3]) <= 0.005
    assert abs(math.degrees(result.yaw_rad - yaw_true)) <= 0.5
    assert result.faces == 2 and result.n_scans == 10
    assert result.residual_m < 0.012  # the range noise (trimmed at 15 mm), nothing systematic


def test_a_box_out_of_sight_is_a_clear_error(calibration_scene):
    with SimCalibrationRig(calibration_scene) as rig:
        scans = collect_scans(rig, 2)
    far = calibration_scene.box.outline() + np.array([3.0, 3.0])
    with pytest.raises(ConfigError, match=r"face\(s\) of the box"):
        fit_lidar_to_box(scans, far, GUESS_XY_M, GUESS_YAW_RAD)
    with pytest.raises(ConfigError, match="4 corners"):
        fit_lidar_to_box(scans, far[:3], GUESS_XY_M, GUESS_YAW_RAD)
