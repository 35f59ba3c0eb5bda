"""Shared fixtures of the tabletop simulation tests."""

from __future__ import annotations

import pytest

from mmrobot.envs.scene import choose_gl_backend

choose_gl_backend()  # before mujoco is imported: headless EGL (or OSMesa) rendering
pytest.importorskip("mujoco")
pytest.importorskip("gymnasium")


@pytest.fixture(scope="module")
def pick_env():
    from mmrobot.envs.tabletop import TabletopEnv

    env = TabletopEnv(task="pick")
    yield env
    env.close()


@pytest.fixture(scope="module")
def fast_env():
    """A TabletopEnv without cameras and lidar (no rendering): for long expert rollouts."""
    from mmrobot.envs.sensors import SensorSuiteConfig
    from mmrobot.envs.tabletop import TabletopEnv

    suite = SensorSuiteConfig()
    for name in ("scene_cam", "wrist_cam", "lidar"):
        suite = suite.with_sensor(name, enabled=False)
    env = TabletopEnv(sensors=suite, render_mode=None)
    yield env
    env.close()
