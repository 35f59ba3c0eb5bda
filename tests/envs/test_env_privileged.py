"""Privileged auxiliary targets, dataset format 2 and demonstrations that settle at the goal."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from mmrobot.cli import main as cli_main
from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.envs import PHASES, privileged_state
from mmrobot.envs.collect import CollectConfig, Job, collect, expert_success, run_expert_episode
from mmrobot.envs.dataset import DATASET_FORMAT_VERSION, DatasetWriter, DemoDataset, EpisodeRecord
from mmrobot.envs.privileged import AUX_TARGETS
from mmrobot.envs.tabletop import TabletopEnv
from mmrobot.envs.tasks import PICK_LIFT_M, is_success

STACK = "stack color=green size=small base_color=red base_size=large"


def test_privileged_state_at_reset_describes_the_scene(fast_env):
    fast_env.reset(seed=3, options={"task": "pick color=blue size=large"})
    sc = fast_env.scene
    s = privileged_state(fast_env)
    tcp = sc.tcp_pose()[0]
    block = sc.block_pos("blue", "large")
    np.testing.assert_allclose(s.block_rel, block - tcp, atol=1e-6)
    np.testing.assert_allclose(s.block_rel + s.tcp, block, atol=1e-6)  # base frame
    np.testing.assert_allclose(s.goal_rel, block + [0, 0, PICK_LIFT_M] - tcp, atol=1e-3)
    assert not s.held and s.phase_name == "above"
    arrays = s.arrays()
    for name, (shape, dtype) in AUX_TARGETS.items():
        assert arrays[name].shape == shape and arrays[name].dtype == np.dtype(dtype)
    fresh = TabletopEnv(sensors=fast_env.config.sensors, render_mode=None)
    with pytest.raises(LifecycleError, match="reset"):
        privileged_state(fresh)
    fresh.close()


def test_block_yaw_is_the_turn_to_the_blocks_faces_with_its_90_degree_symmetry(fast_env):
    from mmrobot.envs.experts import tool_yaw_to_block
    from mmrobot.envs.privileged import turn_from_target, yaw_target

    fast_env.reset(seed=5, options={"task": "pick color=red size=small"})
    sc = fast_env.scene
    block = fast_env.task.block
    pos = sc.block_pos(*block)
    targets = {}
    for deg in (-30.0, 20.0, 110.0):  # 110 is 20 turned by a quarter: the same faces
        sc.set_block_pose(block, pos, np.radians(deg))
        sc.mujoco.mj_forward(sc.model, sc.data)
        phi = tool_yaw_to_block(sc, block)
        targets[deg] = privileged_state(fast_env).block_yaw
        np.testing.assert_allclose(targets[deg], [np.sin(4 * phi), np.cos(4 * phi)], atol=1e-6)
    np.testing.assert_allclose(targets[20.0], targets[110.0], atol=1e-5)
    # the sine has the sign of the turn the expert makes, and is 0 when square
    assert targets[20.0][0] > 0.5 and targets[-30.0][0] < -0.5
    np.testing.assert_allclose(yaw_target(0.0), [0.0, 1.0])  # square on the faces
    turns = np.radians([-44.0, -10.0, 0.0, 30.0])
    back = turn_from_target(np.stack([yaw_target(a) for a in turns]))
    np.testing.assert_allclose(back, turns, atol=1e-6)  # the inverse, within +-45 degrees
    # an array of turns gives the rows one turn at a time gives (yaw_probe converts whole episodes)
    np.testing.assert_array_equal(yaw_target(turns), np.stack([yaw_target(a) for a in turns]))
    np.testing.assert_allclose(yaw_target(np.radians(45)), yaw_target(np.radians(-45)), atol=1e-6)


def test_the_expert_closes_square_on_the_block(fast_env):
    ep = run_expert_episode(fast_env, Job("pick color=green size=large", 6), settle_steps=2)
    closing = int(np.argmax(ep.actions[:, 6] < 0.5))  # the first closed gripper command
    start, square = ep.aux["block_yaw"][0], ep.aux["block_yaw"][closing]
    assert closing > 0 and square[1] > 0.98  # cos 4 phi near 1: phi within about 3 degrees
    assert not np.allclose(start, square, atol=0.05)  # it had to turn


@pytest.mark.parametrize(
    "task,seed", [("pick color=green size=large", 6), ("place", 3), (STACK, 4)]
)
def test_the_over_block_expert_turns_only_over_the_block_and_closes_square(fast_env, task, seed):
    from mmrobot.envs.privileged import turn_from_target

    def turns_far_and_closing(turn):
        ep = run_expert_episode(fast_env, Job(task, seed), settle_steps=0, expert_turn=turn)
        assert ep.success, (turn, ep.reason)
        closing = int(np.argmax(ep.actions[:, 6] < 0.5))
        phi = np.degrees(turn_from_target(ep.aux["block_yaw"][: closing + 1]))
        far = np.linalg.norm(ep.aux["block_rel"][: closing + 1, :2], axis=1) > 0.02
        assert far[0] and not far[-1]  # it starts away from the block and closes over it
        return float(np.ptp(phi[far])), abs(float(phi[-1]))

    start_turn, start_left = turns_far_and_closing("start")
    assert start_turn > 3.0  # the default expert turns on the way (one tick turns 5.7 degrees)
    assert start_left < 3.0  # ... and closes square on the faces
    for late in ("over_block", "descending"):
        late_turn, late_left = turns_far_and_closing(late)
        assert late_turn < 1.0, late  # keeps its yaw until it is over the block ...
        assert late_left < 3.0, late  # ... and closes square on the faces


@pytest.mark.parametrize("task,seed", [("pick color=green size=large", 6), (STACK, 4)])
def test_the_descending_expert_goes_down_while_it_turns_where_over_block_waits(
    fast_env, task, seed
):
    def turning_ticks(turn):
        ep = run_expert_episode(fast_env, Job(task, seed), settle_steps=0, expert_turn=turn)
        assert ep.success, (turn, ep.reason)
        closing = int(np.argmax(ep.actions[:, 6] < 0.5))
        turning = np.abs(ep.actions[:closing, 5]) > 0.02  # the tool's yaw command
        assert turning.sum() >= 2, turn  # the block starts turned: both experts turn
        return ep.actions[:closing][turning, 2], closing  # dz while turning

    waits_dz, waits_closing = turning_ticks("over_block")
    goes_dz, goes_closing = turning_ticks("descending")
    # over_block holds its height until nearly square (its last turning tick descends) ...
    assert np.abs(waits_dz[:-1]).max() < 0.002
    assert goes_dz[0] < -0.01  # ... descending is on its way down from the first turning tick
    assert goes_closing < waits_closing  # and closes sooner


@pytest.mark.parametrize("turn", ["over_block", "descending"])
def test_the_recorded_phase_is_the_late_turning_experts_phase_too(fast_env, turn):
    # privileged_state labels the phase with the default expert; a late-turning episode's
    # phases must be the same (the turn only changes the yaw away from the block, and the
    # height it waits at while turning over it)
    from mmrobot.envs.experts import ScriptedExpert, expert_plan

    steps = 0
    for task, seed in [("reach", 1), ("pick", 2), ("place", 3), (STACK, 4)]:
        fast_env.reset(seed=seed, options={"task": task})
        expert = ScriptedExpert(fast_env, turn=turn)
        for _ in range(fast_env.task.max_steps):
            action = expert.act()
            assert expert_plan(fast_env).phase == expert.phase, (task, steps)
            steps += 1
            _, _, terminated, truncated, _ = fast_env.step(action)
            if terminated or truncated:
                break
    assert steps > 100


def test_the_expert_turn_option_is_checked_and_recorded_in_the_dataset(tmp_path):
    from mmrobot.envs.experts import ScriptedExpert, expert_plan

    turns = r"\['start', 'over_block', 'descending'\]"
    with pytest.raises(ConfigError, match=r"expert turn must be one of " + turns):
        CollectConfig(tasks=("pick",), episodes=1, out="x.h5", expert_turn="late")
    with pytest.raises(ConfigError, match="'late'"):  # not 1 failed episode per seed
        expert_success(["pick"], 1, workers=0, progress=False, expert_turn="late")
    env = TabletopEnv(render_mode=None)
    env.reset(seed=0, options={"task": "pick"})
    with pytest.raises(ConfigError, match="'sideways'"):
        expert_plan(env, "sideways")
    with pytest.raises(ConfigError, match="expert turn"):
        ScriptedExpert(env, turn="")
    env.close()
    out = tmp_path / "late.h5"
    cfg = CollectConfig(
        tasks=("reach",), episodes=1, out=str(out), workers=0, expert_turn="over_block"
    )
    collect(cfg, progress=False)
    assert DemoDataset(out).expert_turn == "over_block"
    with h5py.File(out, "a") as f:  # a dataset from before the option: the default expert
        del f.attrs["expert_turn"]
    assert DemoDataset(out).expert_turn == "start"


@pytest.mark.parametrize("task,seed", [("reach", 0), ("pick", 2), ("place", 3), (STACK, 4)])
def test_recorded_aux_targets_follow_the_episode(fast_env, task, seed):
    ep = run_expert_episode(fast_env, Job(task, seed), settle_steps=4)
    assert ep.success
    T = ep.n_steps
    for name, (shape, dtype) in AUX_TARGETS.items():
        assert ep.aux[name].shape == (T, *shape) and ep.aux[name].dtype == np.dtype(dtype)
    phases = [PHASES[i] for i in ep.aux["phase"]]
    held, block_rel, goal_rel = ep.aux["held"], ep.aux["block_rel"], ep.aux["goal_rel"]
    assert phases[-1] == "hold" and not held[0]
    # step t describes the state observation t was taken in: the TCP the ee_pose shows
    tcp = ep.values["ee_pose"][:, -1, :3]
    block0 = tcp[0] + block_rel[0]
    np.testing.assert_allclose(block0, fast_env.block_start_pos, atol=2e-3)
    if task == "reach":
        half = fast_env.scene.block_half_m(*fast_env.task.block)
        assert np.linalg.norm(block_rel[-1][:2]) < 0.01  # right above the block ...
        assert abs(block_rel[-1][2] + half + 0.03) < 0.01  # ... 3 cm over its top
        assert not held.any()
    else:
        assert held.any() and {"descend", "close", "lift"} <= set(phases)
    if task in ("reach", "pick"):
        assert np.linalg.norm(goal_rel[-1]) < 0.01  # settled at the goal
        assert np.linalg.norm(goal_rel[0]) > 0.05
    if task.startswith(("place", "stack")):
        assert not held[-1] and "release" in phases and "carry" in phases
    if task == "pick":
        assert held[-1] and np.linalg.norm(block_rel[-1]) < 0.02


@pytest.mark.parametrize(
    "task,seed", [("reach", 5), ("push", 1), ("pick", 6), ("place", 7), (STACK, 8)]
)
def test_settle_steps_hold_still_at_the_goal(fast_env, task, seed):
    ep = run_expert_episode(fast_env, Job(task, seed), settle_steps=10)
    assert ep.success and ep.settle_steps == 10 and ep.reason == "success"
    done = ep.n_steps - ep.settle_steps - 1  # the step whose action completed the task
    assert ep.rewards[done] == 1.0 and not ep.rewards[:done].any()
    assert ep.rewards[done:].all()  # still accomplished while holding
    assert is_success(fast_env.scene, fast_env.task)
    tcp = ep.values["ee_pose"][-10:, -1, :3]  # the TCP at the settle steps' observations
    # arriving (and, after a release, moving up) first, then still: the last half within 1 cm
    assert np.linalg.norm(tcp[-5:] - tcp[-1], axis=1).max() < 0.01
    assert np.linalg.norm(np.diff(tcp, axis=0), axis=1)[-4:].max() < 0.003
    assert PHASES[ep.aux["phase"][-1]] == "hold"


def test_dataset_v2_carries_aux_and_settle_steps(tmp_path):
    out = tmp_path / "d.h5"
    cfg = CollectConfig(tasks=("reach",), episodes=1, out=str(out), workers=0, image_size=16)
    assert cfg.settle_steps == 10
    collect(cfg, progress=False)
    ds = DemoDataset(out)
    info = ds.info(0)
    assert info.settle_steps == 10 and info.success
    aux = ds.aux(0)
    assert set(aux) == set(AUX_TARGETS)
    assert aux["block_rel"].shape == (info.n_steps, 3) and aux["phase"].shape == (info.n_steps,)
    assert ds.phases == PHASES
    # a subset reads only those (an unknown name is skipped, a repeated one read once)
    some = ds.aux(0, ("held", "nope", "held", "tcp"))
    assert list(some) == ["held", "tcp"] and np.array_equal(some["held"], aux["held"])
    assert ds.stream(0, "ee_pose").shape == (info.n_steps, 10, 9)
    with h5py.File(out) as f:
        assert f.attrs["format_version"] == DATASET_FORMAT_VERSION == 2


def test_version_1_file_says_how_to_recollect(tmp_path):
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format_version"] = 1
        g = f.create_group("episodes/000000")
        g.attrs["task"] = "pick color=red size=small"
        f.create_group("episodes/000001").attrs["task"] = "reach color=blue size=large"
    with pytest.raises(ConfigError) as e:
        DemoDataset(path)
    msg = str(e.value)
    assert "is format version 1" in msg and "reads format 2" in msg
    assert f"mmrobot collect --tasks pick reach --episodes 2 --out {path}" in msg


def test_episodes_without_aux_read_back_empty(tmp_path):
    from mmrobot.envs.sensors import default_stream_specs
    from mmrobot.envs.tabletop import ACTION_HIGH, ACTION_LOW

    specs = [s for s in default_stream_specs(16) if s.name == "joints"]
    T = 3
    ep = EpisodeRecord(
        task="reach",
        instruction="x",
        seed=0,
        success=False,
        split="train",
        reason="",
        values={"joints": np.zeros((T, 10, 7), np.float32)},
        ages_ns={"joints": np.zeros(T, np.int64)},
        valid={"joints": np.ones(T, bool)},
        actions=np.zeros((T, 7), np.float32),
        rewards=np.zeros(T, np.float32),
        t_ns=np.arange(T, dtype=np.int64),
    )
    with DatasetWriter(tmp_path / "a.h5", specs, ACTION_LOW, ACTION_HIGH, 20.0) as w:
        w.append(ep)
        bad = EpisodeRecord(**{**ep.__dict__, "aux": {"held": np.zeros(T + 1, bool)}})
        with pytest.raises(ValueError, match="aux target 'held' has shape"):
            w.append(bad)
    ds = DemoDataset(tmp_path / "a.h5")
    assert ds.aux(0) == {} and ds.info(0).settle_steps == 0


def test_collect_cli_settle_steps_flag(tmp_path, capsys):
    out = tmp_path / "cli.h5"
    argv = ["collect", "--tasks", "reach", "--episodes", "1", "--workers", "0"]
    argv += ["--image-size", "16", "--settle-steps", "0", "--out", str(out), "--no-progress"]
    assert cli_main(argv) == 0
    assert DemoDataset(out).info(0).settle_steps == 0
    assert cli_main([*argv[:-3], "--settle-steps", "-1", "--out", str(tmp_path / "x.h5")]) == 2
    assert "settle_steps must be >= 0" in capsys.readouterr().err


def test_stepping_past_success_continues_the_episode(fast_env):
    from mmrobot.envs.experts import ScriptedExpert

    fast_env.reset(seed=0, options={"task": "reach"})
    expert = ScriptedExpert(fast_env)
    for _ in range(fast_env.task.max_steps):
        _, r, terminated, _, _ = fast_env.step(expert.act())
        if terminated:
            break
    t0 = fast_env.t_ns
    for _ in range(3):
        _, r, terminated, truncated, info = fast_env.step(expert.act())
        assert terminated and r == 1.0 and not truncated and info["is_success"]
    assert fast_env.t_ns == t0 + 3 * fast_env.control_period_ns
