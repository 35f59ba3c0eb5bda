"""benchmarks/closed_loop_probe.py: the first closing of an episode and where a held block is
lost, on hand-built tick records; which block a tick is nearest, in a real scene."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from closed_loop_probe import _first_closing, _first_loss, _grasp_tick, _Tick  # noqa: E402


def tick(grip: float, held: bool, phase: str = "close", i: int = 0) -> _Tick:
    """A tick near the grasp point; the block 10 - i cm from the goal, 2 cm above it, the
    goal head 3 cm off."""
    return _Tick(
        grip, 0.01, 0.0, 0.0, held, 0.005, 0.012, 0.01, phase, 0.1 - 0.01 * i, 0.02, 0.03, "named"
    )


def episode(*spec: tuple[float, bool, str]) -> list[_Tick]:
    return [tick(g, h, p, i) for i, (g, h, p) in enumerate(spec)]


def test_a_slip_while_carrying_is_found_at_the_last_held_tick():
    ticks = episode(
        (1, False, "descend"),
        (0, False, "close"),  # the first closing: tick 1
        (0, True, "lift"),
        (0, True, "carry"),
        (0, False, "carry"),  # the gripper still closed: a slip
        (0, False, "reach"),
    )
    first = _first_closing(ticks)
    assert first["tick"] == 1 and first["held"]
    lost = _first_loss(ticks, first["tick"])
    assert (lost["phase"], lost["how"], lost["tick"]) == ("carry", "slipped", 4)
    # at the last held tick (3): 10 - 3 cm from the goal in x-y, 2 cm above it
    assert lost["goal_xy_cm"] == pytest.approx(7.0) and lost["goal_dz_cm"] == pytest.approx(2.0)
    assert lost["goal_head_xy_cm"] == pytest.approx(3.0)


def test_an_opened_gripper_is_a_release_and_a_block_held_to_the_end_is_never_lost():
    ticks = episode(
        (1, False, "descend"),
        (0, True, "close"),
        (0, True, "lift"),
        (1, True, "lower"),  # the policy opens above the goal
        (1, False, "retreat"),
    )
    lost = _first_loss(ticks, 1)
    assert (lost["phase"], lost["how"], lost["tick"]) == ("lower", "released", 4)
    kept = episode((1, False, "descend"), (0, True, "close"), (0, True, "carry"))
    assert _first_loss(kept, 1)["phase"] == "never"
    assert _first_closing([tick(1, False), tick(1, False)]) is None  # never closes


def test_a_tick_names_the_block_nearest_the_gripper():
    # stack names two blocks: a closing over the base is a role mix-up, over a third block a
    # wrong block; each block is moved under the gripper in turn
    import numpy as np

    from mmrobot.envs.privileged import privileged_state
    from mmrobot.envs.sensors import SensorSuiteConfig
    from mmrobot.envs.tabletop import TabletopEnv

    suite = SensorSuiteConfig()
    for name in ("scene_cam", "wrist_cam", "lidar"):
        suite = suite.with_sensor(name, enabled=False)
    env = TabletopEnv(sensors=suite, render_mode=None)
    task = "stack color=green size=small base_color=red base_size=large"
    env.reset(seed=0, options={"task": task})
    sc = env.scene
    other = next(b for b in sc.ids.block_body if b not in (env.task.block, env.task.base_block))
    under = sc.tcp_pose()[0][:2]
    for block, want in [(env.task.block, "named"), (env.task.base_block, "base"), (other, "other")]:
        pos = sc.block_pos(*block)
        sc.set_block_pose(block, np.array([under[0], under[1], pos[2]]), 0.0)
        sc.mujoco.mj_forward(sc.model, sc.data)
        assert _grasp_tick(env, privileged_state(env), 1.0, "above", 0.0, 0.0).nearest == want
        sc.set_block_pose(block, pos, 0.0)  # back, out of the way of the next one
        sc.mujoco.mj_forward(sc.model, sc.data)
    env.close()
