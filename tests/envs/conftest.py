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
