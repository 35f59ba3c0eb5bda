"""Forward kinematics from the arm's MJCF and the ee_pose stream computed from joint readings."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError
from mmrobot.envs import names
from mmrobot.envs.kinematics import ArmKinematics, rotation_6d, tcp_lever_arms_m
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


def _chain_xml(elbow_type: str = "hinge", elbow_pos: str = "0 0 0") -> str:
    """Six named joints in a chain to the TCP site, the elbow's type and anchor given."""
    body = f'<site name="{names.TCP_SITE}" pos="0 0.02 0.1"/>'
    offsets = ["0 0 0.08", "0 0 0.06", "0.05 0 0.3", "0 0 0.3", "0 0 0.04", "0 0.01 0.04"]
    axes = ["0 0 1", "0 1 0", "0 1 0", "0 0 1", "0 1 0", "1 0 0"]
    for name, pos, axis in reversed(list(zip(names.ARM_JOINTS, offsets, axes, strict=True))):
        kind, anchor = (elbow_type, elbow_pos) if name == "elbow" else ("hinge", "0 0 0")
        joint = f'<joint name="{name}" type="{kind}" axis="{axis}" pos="{anchor}"/>'
        body = f'<body pos="{pos}">{joint}<geom size="0.02"/>{body}</body>'
    return f"<mujoco><worldbody>{body}</worldbody></mujoco>"


def test_lever_arms_bound_how_far_the_tcp_moves():
    """|tcp(a) - tcp(b)| <= sum_j lever_j |a_j - b_j| for random pairs of poses (the safety
    layer skips its second workspace check on this bound), and it is not loose by much."""
    import mujoco

    scene = Scene()
    models = [scene.model, mujoco.MjModel.from_xml_string(_chain_xml(elbow_pos="0.03 0 0.02"))]
    rng = np.random.default_rng(0)
    for model in models:
        lever = tcp_lever_arms_m(model)
        assert lever is not None and lever.shape == (6,) and np.all(lever >= 0)
        kin = ArmKinematics(model)
        ranges = np.array([model.jnt_range[model.joint(n).id] for n in names.ARM_JOINTS])
        low = np.where(ranges[:, 0] < ranges[:, 1], ranges[:, 0], -np.pi)
        high = np.where(ranges[:, 0] < ranges[:, 1], ranges[:, 1], np.pi)
        tightest = 0.0
        for k in range(2000):
            a = rng.uniform(low, high)
            scale = (1e-6, 1e-3, 0.1, 3.0)[k % 4]
            b = a + rng.normal(scale=scale, size=6) * (rng.uniform(size=6) < 0.5)
            moved = np.linalg.norm(kin.tcp_pose(a)[0] - kin.tcp_pose(b)[0])
            bound = lever @ np.abs(a - b)
            assert moved <= bound + 1e-12
            if bound > 0:
                tightest = max(tightest, moved / bound)
        assert tightest > 0.5  # a bound, but one that the arm nearly reaches


def test_no_lever_arms_for_a_chain_with_a_slide_or_a_foreign_joint():
    import mujoco

    assert tcp_lever_arms_m(mujoco.MjModel.from_xml_string(_chain_xml("slide"))) is None
    xml = _chain_xml().replace('<joint name="elbow"', '<joint name="extra"/><joint name="elbow"')
    assert tcp_lever_arms_m(mujoco.MjModel.from_xml_string(xml)) is None


def test_the_analytic_tcp_jacobian_matches_finite_differences():
    scene = Scene()
    kin = ArmKinematics(scene.model)
    rng = np.random.default_rng(1)
    low, high = scene.arm_range[:, 0], scene.arm_range[:, 1]
    for _ in range(5):
        q = rng.uniform(low, high)
        jac = kin.tcp_jacobian(q)
        assert jac.shape == (3, 6)
        numeric = np.empty((3, 6))
        for j in range(6):
            dq = np.zeros(6)
            dq[j] = 1e-6
            numeric[:, j] = (kin.tcp_pose(q + dq)[0] - kin.tcp_pose(q - dq)[0]) / 2e-6
        np.testing.assert_allclose(jac, numeric, atol=1e-6)


def test_the_safety_layer_moves_a_target_into_the_box_alike_with_the_analytic_jacobian():
    """The box solve on the real arm: the same joints as with finite differences, from one
    Jacobian per iteration instead of six more forward kinematics."""
    from mmrobot.deploy.safety import SafetyLayer, SafetyLimits

    scene = Scene()
    kin = ArmKinematics(scene.model)
    calls = {"fk": 0}

    def fk(q):
        calls["fk"] += 1
        return kin.tcp_pose(q)[0]

    limits = SafetyLimits(
        joint_low_rad=tuple(scene.arm_range[:, 0]), joint_high_rad=tuple(scene.arm_range[:, 1]),
        max_velocity_rad_s=(50.0,) * 6, max_acceleration_rad_s2=(1e6,) * 6,
        workspace_low_m=(-1.0, -1.0, 0.15), workspace_high_m=(1.0, 1.0, 1.0),
    )  # fmt: skip
    home = np.asarray(scene.home_qpos, np.float64)
    below = home + np.array([0.0, 0.25, 0.25, 0.0, 0.0, 0.0])  # reaches down past the floor
    assert fk(below)[2] < 0.15
    out, counts = {}, {}
    for name, jac in (("numeric", None), ("analytic", kin.tcp_jacobian)):
        layer = SafetyLayer(limits, period_s=0.01, forward_kinematics=fk, fk_jacobian=jac)
        layer.reset(np.append(home, 0.5))
        calls["fk"] = 0
        out[name] = layer.filter(0, np.append(below, 0.5))
        counts[name] = calls["fk"]
        assert layer.counts() == {"workspace:z_low": 1}
        assert kin.tcp_pose(out[name][:6])[0][2] == pytest.approx(0.15, abs=2e-3)
    np.testing.assert_allclose(out["analytic"], out["numeric"], atol=1e-5)
    assert counts["analytic"] < counts["numeric"] / 2, counts
