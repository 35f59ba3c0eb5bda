"""The MJCF scene and the Cartesian controller."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError
from mmrobot.envs import names
from mmrobot.envs.scene import HOME_TCP_MAT, HOME_TCP_POS_M, Scene, mat_to_rotvec, rotvec_to_mat


@pytest.fixture(scope="module")
def scene():
    return Scene()


def test_every_named_element_exists_and_home_pose_is_solved(scene):
    assert len(scene.ids.block_body) == len(names.COLORS) * len(names.SIZES)
    scene.reset_arm(scene.home_qpos)
    pos, mat = scene.tcp_pose()
    np.testing.assert_allclose(pos, HOME_TCP_POS_M, atol=1e-4)
    assert np.linalg.norm(mat_to_rotvec(mat @ HOME_TCP_MAT.T)) < 1e-3
    assert scene.gripper_opening_m == pytest.approx(names.GRIPPER_MAX_OPENING_M)


def test_blocks_have_two_sizes(scene):
    for c in names.COLORS:
        assert scene.block_half_m(c, "small") == pytest.approx(names.BLOCK_HALF_SIZES_M["small"])
        assert scene.block_half_m(c, "large") == pytest.approx(names.BLOCK_HALF_SIZES_M["large"])


def test_delta_pose_command_moves_the_tcp_by_the_delta(scene):
    mj = scene.mujoco
    mj.mj_resetData(scene.model, scene.data)
    scene.reset_arm(scene.home_qpos)
    start, _ = scene.tcp_pose()
    for _ in range(10):  # 10 ticks of 1 cm in -z and +y
        scene.command_delta_pose(np.array([0.0, 0.01, -0.01, 0, 0, 0]))
        for _ in range(25):
            mj.mj_step(scene.model, scene.data)
    for _ in range(10):
        scene.command_delta_pose(np.zeros(6))
        for _ in range(25):
            mj.mj_step(scene.model, scene.data)
    end, mat = scene.tcp_pose()
    np.testing.assert_allclose(end - start, [0.0, 0.1, -0.1], atol=0.005)
    assert np.linalg.norm(mat_to_rotvec(mat @ HOME_TCP_MAT.T)) < 0.02


def test_rotvec_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        rv = rng.normal(size=3)
        rv *= rng.uniform(0.01, 3.0) / np.linalg.norm(rv)
        np.testing.assert_allclose(mat_to_rotvec(rotvec_to_mat(rv)), rv, atol=1e-6)


def test_missing_scene_file_lists_shipped_scenes(tmp_path):
    with pytest.raises(FileNotFoundError, match="tabletop.xml"):
        Scene(tmp_path / "nope.xml")


def test_malformed_mjcf_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<mujoco><worldbody><body name='x'></worldbody></mujoco>")
    with pytest.raises(ConfigError, match="does not load"):
        Scene(bad)


def test_scene_without_the_arm_names_what_is_missing(tmp_path):
    other = tmp_path / "empty.xml"
    other.write_text("<mujoco><worldbody><geom type='plane' size='1 1 1'/></worldbody></mujoco>")
    with pytest.raises(ConfigError, match="no joint named 'shoulder_pan'"):
        Scene(other)
