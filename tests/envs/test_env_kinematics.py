"""Forward kinematics from the arm's MJCF and the ee_pose stream computed from joint readings."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError
from mmrobot.envs.kinematics import ArmKinematics, rotation_6d
from mmrobot.envs.scene import HOME_TCP_MAT, HOME_TCP_POS_M, Scene
from mmrobot.envs.sensors import SensorSuiteConfig
from mmrobot.envs.tabletop import TabletopEnv

MS = 1_000_000


def _env(suite: SensorSuiteConfig) -> TabletopEnv:
    for name in ("scene_cam", "wrist_cam", "lidar"):
        suite = suite.with_sensor(name, enabled=False)
    return TabletopEnv(task="reach color=red size=small", sensors=suite, render_mode=None)


def test_fk_matches_the_simulators_tcp_site():
    scene = Scene()
    kin = ArmKinematics(scene.model)
    pos, mat = kin.tcp_pose(scene.home_qpos)
    np.testing.assert_allclose(pos, HOME_TCP_POS_M, atol=1e-4)
    np.testing.assert_allclose(mat, HOME_TCP_MAT, atol=1e-4)
    rng = np.random.default_rng(0)
    for _ in range(5):
        q = scene.home_qpos + rng.uniform(-0.4, 0.4, 6)
        scene.reset_arm(q)  # mj_forward on the simulation's own data
        p_sim, r_sim = scene.tcp_pose()
        p, r = kin.tcp_pose(q)
        np.testing.assert_allclose(p, p_sim, atol=1e-9)
        np.testing.assert_allclose(r, r_sim, atol=1e-9)
        v = kin.ee_pose_vector(np.append(q, 0.05))  # the joints stream's 7 values work too
        assert v.shape == (9,) and v.dtype == np.float32
        np.testing.assert_allclose(v, np.concatenate([p, r[:, 0], r[:, 1]]), atol=1e-6)
    np.testing.assert_array_equal(rotation_6d(np.eye(3)), [1, 0, 0, 0, 1, 0])
    scene.close()


def test_fk_needs_the_arm_elements_and_six_angles():
    mujoco = pytest.importorskip("mujoco")
    empty = mujoco.MjModel.from_xml_string("<mujoco><worldbody/></mujoco>")
    with pytest.raises(ConfigError, match="tcp_site"):
        ArmKinematics(empty)
    kin = ArmKinematics(Scene().model)
    with pytest.raises(ValueError, match="6 finite joint angles"):
        kin.tcp_pose(np.zeros(3))


def test_ee_pose_is_fk_of_each_noisy_joints_reading():
    env = _env(SensorSuiteConfig().with_sensor("joints", noise_std=0.003))
    env.reset(seed=0)
    for _ in range(4):
        env.step(np.array([0.01, 0.0, -0.01, 0, 0, 0, 1], dtype=np.float32))
    t_j, joints = env.buffers["joints"].window(0, env.t_ns)
    t_e, ee = env.buffers["ee_pose"].window(0, env.t_ns)
    np.testing.assert_array_equal(t_e, t_j)  # one pose per reading, the same stamps
    kin = ArmKinematics(env.scene.model)
    for q, v in zip(joints[-20:], ee[-20:], strict=True):
        np.testing.assert_array_equal(v, kin.ee_pose_vector(q))  # of the *measured* angles
    env.close()


@pytest.mark.parametrize("noise_rad,tol_m", [(0.0, 1e-5), (0.002, 0.01)])
def test_ee_pose_observation_is_the_true_tcp_within_the_joint_noise(noise_rad, tol_m):
    env = _env(SensorSuiteConfig().with_sensor("joints", noise_std=noise_rad))
    env.reset(seed=1)
    for _ in range(6):  # hold still: the pose at the observation time is the current one
        env.step(np.array([0, 0, 0, 0, 0, 0, 1], dtype=np.float32))
    obs = env.observation
    assert obs.valid["ee_pose"] and obs.values["ee_pose"].shape == (10, 9)
    assert obs.ages_ns["ee_pose"] == obs.ages_ns["joints"]
    latest = obs.values["ee_pose"][-1]
    pos, mat = env.scene.tcp_pose()
    # 2 mrad per joint over a ~0.5 m arm: a few millimetres
    assert np.linalg.norm(latest[:3] - pos) < tol_m
    np.testing.assert_allclose(latest[3:], rotation_6d(mat), atol=2 * tol_m)
    env.close()


def test_ee_pose_takes_its_timing_and_existence_from_joints():
    suite = SensorSuiteConfig().with_sensor("joints", latency_ns=10 * MS, rate_hz=100.0)
    ee = {s.name: s for s in suite.stream_specs()}["ee_pose"]
    assert (ee.latency_ns, ee.rate_hz) == (10 * MS, 100.0)
    with pytest.raises(ConfigError, match="computed from the 'joints' readings"):
        SensorSuiteConfig().with_sensor("joints", enabled=False)
    ok = SensorSuiteConfig().with_sensor("ee_pose", enabled=False)
    assert "ee_pose" not in [s.name for s in ok.with_sensor("joints", enabled=False).stream_specs()]
    with pytest.raises(ConfigError, match="set \\['latency_ns'\\] on 'joints'"):
        SensorSuiteConfig().with_sensor("ee_pose", latency_ns=5 * MS)


def test_ee_pose_dropout_removes_it_like_the_other_joint_streams():
    env = _env(SensorSuiteConfig().with_sensor("ee_pose", dropout=1.0))
    env.reset(seed=2)
    env.step(np.array([0, 0, 0, 0, 0, 0, 1], dtype=np.float32))
    assert env.observation.valid["joints"] and not env.observation.valid["ee_pose"]
    env.close()


def test_a_non_finite_joints_reading_is_rejected_not_raised():
    env = _env(SensorSuiteConfig())
    env.reset(seed=0)
    ee = next(d for d in env.drivers if d.spec.name == "ee_pose")
    bad = np.full(7, np.nan, dtype=np.float32)
    ee.receive(env.scene, env.t_ns + 1, bad)
    assert env.buffers["ee_pose"].stats.non_finite == 1
    env.close()
