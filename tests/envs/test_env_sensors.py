"""Simulated sensor drivers: rates, latency, noise, bias, dropout through the real buffers."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError
from mmrobot.envs.sensors import LidarDriver, SensorConfig, SensorSuiteConfig
from mmrobot.envs.tabletop import TabletopEnv

MS = 1_000_000


def _env(suite: SensorSuiteConfig, **kw) -> TabletopEnv:
    return TabletopEnv(task="reach color=red size=small", sensors=suite, render_mode=None, **kw)


def _hold(env: TabletopEnv, n: int) -> list:
    out = []
    for _ in range(n):
        env.step(np.array([0, 0, 0, 0, 0, 0, 1.0], dtype=np.float32))
        out.append(env.observation)
    return out


def test_default_streams_match_the_agreed_spec(pick_env):
    specs = {s.name: s for s in pick_env.stream_specs}
    assert list(specs) == ["scene_cam", "wrist_cam", "lidar", "ft", "joints", "ee_pose"]
    assert specs["scene_cam"].shape == (96, 96, 3) and specs["scene_cam"].dtype == "uint8"
    assert specs["lidar"].shape == (360, 3) and specs["lidar"].rate_hz == 10
    assert specs["ft"].obs_shape == (10, 6) and specs["ft"].policy == "interp"
    assert specs["joints"].obs_shape == (10, 7) and specs["joints"].rate_hz == 200
    ee = specs["ee_pose"]
    assert (ee.modality, ee.obs_shape, ee.dtype, ee.rate_hz) == ("joints", (10, 9), "float32", 200)
    assert (ee.policy, ee.max_age_ns) == ("interp", 20 * MS)
    pick_env.reset(seed=1)
    obs = pick_env.observation
    assert obs.all_valid()
    assert 0 <= obs.ages_ns["scene_cam"] < 34 * MS
    assert 0 <= obs.ages_ns["lidar"] < 100 * MS
    assert 0 <= obs.ages_ns["ft"] <= 2 * MS


def test_each_driver_samples_at_its_own_rate():
    env = _env(SensorSuiteConfig())
    env.reset(seed=0)
    before = {d.spec.name: d.measured for d in env.drivers}
    _hold(env, 20)  # one second of simulation
    got = {d.spec.name: d.measured - before[d.spec.name] for d in env.drivers}
    assert got["scene_cam"] in (29, 30, 31) and got["wrist_cam"] in (29, 30, 31)
    assert got["lidar"] in (9, 10, 11)
    assert got["ft"] in (99, 100, 101)  # the FT 300's rate
    assert got["joints"] in (199, 200, 201)
    assert got["ee_pose"] == got["joints"]  # one pose per joints reading
    env.close()


def test_latency_shows_in_the_ages_and_hides_recent_samples():
    suite = (
        SensorSuiteConfig()
        .with_sensor("lidar", latency_ns=40 * MS)
        .with_sensor("joints", latency_ns=15 * MS)
    )
    env = _env(suite)
    env.reset(seed=0)
    obs = _hold(env, 30)
    lidar_ages = [o.ages_ns["lidar"] for o in obs]
    assert min(lidar_ages) >= 40 * MS  # never fresher than its latency
    assert max(lidar_ages) < 40 * MS + 100 * MS + 2 * MS
    assert all(15 * MS <= o.ages_ns["joints"] <= 15 * MS + 6 * MS for o in obs)
    env.close()


def test_dropout_makes_a_stream_invalid():
    env = _env(SensorSuiteConfig().with_sensor("lidar", dropout=1.0))
    env.reset(seed=0)
    obs = _hold(env, 5)
    assert not any(o.valid["lidar"] for o in obs)
    assert all(o.valid["joints"] and o.valid["scene_cam"] for o in obs)
    assert env.buffers["lidar"].count == 0
    env.close()


def test_partial_dropout_turns_validity_on_and_off():
    env = _env(SensorSuiteConfig().with_sensor("lidar", dropout=0.8))
    env.reset(seed=3)
    valid = [o.valid["lidar"] for o in _hold(env, 60)]
    assert any(valid) and not all(valid)
    lidar = next(d for d in env.drivers if d.spec.name == "lidar")
    assert 0.6 < lidar.dropped / (lidar.dropped + lidar.measured) < 0.95
    env.close()


def test_latency_jitter_delays_arrival_and_stamps_follow_arrival():
    suite = SensorSuiteConfig().with_sensor("ft", latency_ns=2 * MS, latency_jitter_ns=10 * MS)
    env = _env(suite)
    env.reset(seed=0)
    obs = _hold(env, 10)
    ft = next(d for d in env.drivers if d.spec.name == "ft")
    stats = env.buffers["ft"].stats
    # a host stamps on arrival (minus the declared latency): no sample is lost or reordered,
    # but late ones are stamped late, and nothing is ever fresher than the declared latency
    assert stats.rejected == 0
    assert stats.accepted + len(ft._pending) == ft.measured
    ages = [o.ages_ns["ft"] for o in obs]
    assert min(ages) >= 2 * MS and max(ages) <= 14 * MS
    times, _ = env.buffers["ft"].window(0, env.t_ns)
    gaps = np.diff(times)
    assert gaps.min() < 2 * MS < gaps.max()  # irregular spacing from the jitter
    env.close()


def test_noise_and_bias_are_applied_to_joint_readings():
    suite = SensorSuiteConfig().with_sensor("joints", noise_std=0.01, bias=0.1)
    env = _env(suite)
    env.reset(seed=0)
    _hold(env, 2)
    times, values = env.buffers["joints"].window(0, env.t_ns)
    err = values[-50:, :6] - env.scene.arm_qpos  # the arm holds still
    assert abs(err.mean() - 0.1) < 0.01
    assert 0.006 < err.std() < 0.014
    env.close()


def test_lidar_sees_a_block_in_front_of_the_base():
    env = _env(SensorSuiteConfig(), n_distractors=0)
    env.reset(seed=0)
    sc = env.scene
    for b in sc.ids.block_body:  # clear the table, then one large block on the x axis
        sc.set_block_pose(b, np.array([0.75, -0.5 + 0.1 * len(b[0]), -0.7]), 0.0)
    sc.set_block_pose(("red", "large"), np.array([0.4, 0.0, 0.028]), 0.0)
    sc.mujoco.mj_forward(sc.model, sc.data)
    lidar = next(d for d in env.drivers if isinstance(d, LidarDriver))
    pts = lidar.cast(sc)
    assert pts.shape == (360, 3) and pts.dtype == np.float32
    np.testing.assert_allclose(pts[0], [0.4 - 0.028, 0.0, 0.02], atol=1e-4)  # ray at azimuth 0
    assert not pts[180].any()  # behind the robot: no return within range
    env.close()


def test_3d_lidar_pattern_and_optional_depth_and_velocity_streams():
    suite = SensorSuiteConfig(
        image_size=32,
        lidar_3d=True,
        lidar_rays=90,
        lidar_rings=4,
        sensors={
            "scene_cam_depth": SensorConfig(enabled=True),
            "joint_vel": SensorConfig(enabled=True),
        },
    )
    env = _env(suite)
    env.reset(seed=0)
    obs = env.observation
    assert obs.values["lidar"].shape == (360, 3)
    assert obs.values["scene_cam"].shape == (32, 32, 3)
    depth = obs.values["scene_cam_depth"]
    assert depth.shape == (32, 32) and 0.3 < float(np.median(depth)) < 2.0
    assert obs.values["joint_vel"].shape == (10, 6)
    env.close()


def test_bad_sensor_settings_are_clear_errors():
    with pytest.raises(ConfigError, match="valid streams"):
        SensorSuiteConfig(sensors={"thermal": SensorConfig()})
    with pytest.raises(ConfigError, match="dropout"):
        SensorConfig(dropout=1.5)
    with pytest.raises(ConfigError, match="unknown key"):
        SensorConfig.from_dict({"latency": 3})
