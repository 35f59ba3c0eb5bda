"""camera-intrinsics and hand-eye on the wrist camera, against the simulation's ground truth:
the ChArUco board rendered by MuJoCo, views from generated arm poses."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.calibrate._geometry import homogeneous, rotation_angle_rad, rpy_to_matrix
from mmrobot.calibrate.hand_eye import calibrate_hand_eye, solve_hand_eye
from mmrobot.calibrate.intrinsics import calibrate_intrinsics, collect_board_views, detect_board
from mmrobot.calibrate.poses import PoseChecker, camera_view_poses
from mmrobot.calibrate.sim import SimCalibrationRig, SimNoise
from mmrobot.core.errors import ConfigError
from mmrobot.envs import names

N_VIEWS = 8
# 3 grey levels of pixel noise; joint readings quantized like a 4096-tick encoder (std)
NOISE = SimNoise(camera_levels=3.0, joints_rad=2 * np.pi / 4096 / np.sqrt(12), seed=3)


@pytest.fixture(scope="module")
def collected(calibration_scene):
    with SimCalibrationRig(calibration_scene, NOISE) as rig:
        checker = PoseChecker(rig.scene.model, rig.joint_range)
        poses = camera_view_poses(
            checker,
            lambda p, r, q0: rig.scene.solve_ik(p, r, q0=q0, iters=100),
            names.WRIST_CAMERA,
            rig.scene.home_qpos,
            np.asarray(calibration_scene.board.center_m),
            N_VIEWS,
            seed=1,
        )
        views, missed = collect_board_views(rig, names.WRIST_CAMERA, poses, calibration_scene.board)
        truth = (rig.true_intrinsics(), rig.true_camera_in_tcp())
        yield rig, poses, views, missed, truth


def test_intrinsics_meet_the_targets(calibration_scene, collected):
    rig, poses, views, missed, (k_true, _) = collected
    assert missed == 0 and len(views) == N_VIEWS
    for q in poses:
        assert (q > rig.joint_range[:, 0]).all() and (q < rig.joint_range[:, 1]).all()
    result = calibrate_intrinsics(views, calibration_scene.board)
    k = result.camera_matrix
    # issue 17: focal length within 0.5 %, reprojection error <= 0.3 px
    assert abs(k[0, 0] / k_true[0, 0] - 1) < 0.005
    assert abs(k[1, 1] / k_true[1, 1] - 1) < 0.005
    assert result.rms_px <= 0.3
    assert abs(k[0, 2] - k_true[0, 2]) < 2.0 and abs(k[1, 2] - k_true[1, 2]) < 2.0
    assert result.n_views == N_VIEWS and result.image_size == (640, 480)


def test_hand_eye_meets_the_targets_with_both_methods(calibration_scene, collected):
    rig, _, views, _, (_, x_true) = collected
    intr = calibrate_intrinsics(views, calibration_scene.board)
    results = calibrate_hand_eye(
        views, calibration_scene.board, rig.frames, intr.camera_matrix, intr.dist_coeffs
    )
    assert [r.method for r in results] == ["tsai", "park"]
    for r in results:
        # issue 17: translation <= 2 mm, rotation <= 0.3 degrees
        assert np.linalg.norm(r.camera_in_tcp[:3, 3] - x_true[:3, 3]) <= 0.002, r.method
        assert np.rad2deg(rotation_angle_rad(r.camera_in_tcp[:3, :3], x_true[:3, :3])) <= 0.3
        assert r.board_spread_m < 0.002  # the views agree where the board is


def test_hand_eye_solvers_are_exact_on_exact_data():
    rng = np.random.default_rng(5)
    x = homogeneous(rpy_to_matrix((0.3, -0.2, 1.4)), [0.05, -0.01, 0.07])
    board = homogeneous(rpy_to_matrix((3.0, 0.1, 0.2)), [0.5, 0.1, 0.0])
    g = np.array(
        [
            homogeneous(rpy_to_matrix(rng.uniform(-1, 1, 3)), rng.uniform(-0.3, 0.3, 3))
            for _ in range(6)
        ]
    )
    t = np.array([np.linalg.inv(gi @ x) @ board for gi in g])
    for method in ("tsai", "park"):
        r = solve_hand_eye(g, t, method)
        assert r.camera_in_tcp == pytest.approx(x, abs=1e-9)
    with pytest.raises(ConfigError, match="unknown hand-eye method"):
        solve_hand_eye(g, t, "magic")
    with pytest.raises(ConfigError, match="barely rotate"):
        same = np.repeat(g[:1], 4, axis=0)
        solve_hand_eye(same, t[:4], "park")


def test_a_view_without_the_board_is_not_a_detection(calibration_scene):
    blank = np.full((480, 640, 3), 128, dtype=np.uint8)
    assert detect_board(blank, calibration_scene.board) is None
    with pytest.raises(ConfigError, match="at least 3 views"):
        calibrate_intrinsics([], calibration_scene.board)
