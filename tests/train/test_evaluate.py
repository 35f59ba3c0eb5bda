"""Closed-loop evaluation: statistics, task listing, instructions files, episodes, splits,
the safety path, the instruction-swap split, the training-time entry point, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from train_testlib import tiny_specs

from mmrobot.envs.scene import choose_gl_backend

choose_gl_backend()  # before mujoco is first imported: headless EGL (or OSMesa) rendering

from mmrobot.core.errors import ConfigError  # noqa: E402
from mmrobot.core.types import ActionChunk, Observation  # noqa: E402
from mmrobot.policies.base import Policy  # noqa: E402
from mmrobot.train.eval import (  # noqa: E402
    EvalSettings,
    InstructionLine,
    ScriptedExpertPolicy,
    env_config_for_policy,
    evaluate,
    load_instructions,
    load_policy,
    make_eval_env,
    quick_success,
    run_episode,
    split_env_config,
    wilson_interval,
)

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium")

PERIOD_NS = 50_000_000  # the env's 20 Hz control period


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def tiny_env_config():
    return env_config_for_policy(tiny_specs())


class Recorder(Policy):
    """Holds still (gripper open) and remembers every observation and instruction it got."""

    def __init__(self, horizon: int = 1, actions: np.ndarray | None = None) -> None:
        self.seen: list[Observation] = []
        self.instructions: list[str] = []
        self.horizon = horizon
        self.actions = actions

    def act(self, observation: Observation, instruction: str) -> ActionChunk:
        self.seen.append(observation)
        self.instructions.append(instruction)
        if self.actions is not None:
            a = self.actions
        else:
            a = np.zeros((self.horizon, 7), np.float32)
            a[:, 6] = 1.0
        return ActionChunk(observation.t_ns, a.astype(np.float32), PERIOD_NS)


def _die(env):  # a policy factory whose worker process dies
    import os

    os._exit(3)


# --------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Newcombe (1998), "Two-sided confidence intervals for the single proportion",
        # Stat. Med. 17:857-872, Table I, method 3 (Wilson score, no continuity correction)
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        # by hand: p = 0.7, z^2 = 3.8415, centre = (0.7 + 0.19207) / 1.38415 = 0.64450,
        # half = 1.96 / 1.38415 * sqrt(0.021 + 0.0096037) = 0.24768
        (7, 10, 0.3968, 0.8922),
    ],
)
def test_wilson_interval_matches_published_values(successes, n, low, high):
    lo, hi = wilson_interval(successes, n)
    assert lo == pytest.approx(low, abs=6e-5)
    assert hi == pytest.approx(high, abs=6e-5)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # all successes: the upper bound is exactly 1, the lower n / (n + z^2)
    lo, hi = wilson_interval(20, 20)
    assert hi == 1.0
    assert lo == pytest.approx(20 / (20 + 1.959963984540054**2), rel=1e-9)
    with pytest.raises(ValueError):
        wilson_interval(5, 3)
    with pytest.raises(ValueError):
        wilson_interval(-1, 3)


# --------------------------------------------------------------------------- task listing


def test_list_tasks_lines_parse_back(capsys):
    from mmrobot.cli import main
    from mmrobot.envs.tasks import TASKS, TaskSpec

    assert main(["eval", "--list-tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(set(lines))
    specs = [TaskSpec.parse(line) for line in lines]
    assert all(s.complete for s in specs)
    assert [s.format() for s in specs] == lines
    assert {s.task for s in specs} == set(TASKS)
    # 4 colours x 2 sizes blocks; zones: left, right; stack never puts a block on itself
    counts = {t: sum(s.task == t for s in specs) for t in TASKS}
    assert counts == {"reach": 8, "push": 16, "pick": 8, "place": 8, "stack": 8 * 7}
    assert "pick color=red size=small" in lines


# --------------------------------------------------------------------------- instructions files

GOOD = '{"task": "pick color=red size=small", "instruction": "lift the little red cube"}'


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        ("{not json", ["not valid JSON"]),
        ('["pick", "x"]', ["expected a JSON object"]),
        ('{"task": "pick color=red size=small"}', ["missing key", "instruction"]),
        ('{"task": "pick color=red size=small", "instruction": "x", "n": 3}', ["unknown key"]),
        ('{"task": "juggle color=red", "instruction": "juggle"}', ["unknown task spec", "pick"]),
        ('{"task": "pick color=purple size=small", "instruction": "x"}', ["purple", "valid"]),
        ('{"task": "pick color=red", "instruction": "lift it"}', ["incomplete", "size"]),
        ('{"task": 3, "instruction": "x"}', ["'task' must be a string"]),
        ('{"task": "pick color=red size=small", "instruction": ""}', ["non-empty"]),
    ],
)
def test_instructions_file_errors_name_the_line(tmp_path, bad, words):
    path = tmp_path / "instr.jsonl"
    path.write_text(f"{GOOD}\n\n{bad}\n{GOOD}\n")
    with pytest.raises(ConfigError) as e:
        load_instructions(path)
    msg = str(e.value)
    assert "line 3" in msg
    for w in words:
        assert w in msg


def test_unknown_task_spec_lists_valid_specs(tmp_path):
    path = tmp_path / "instr.jsonl"
    path.write_text('{"task": "fold towel", "instruction": "fold it"}\n')
    with pytest.raises(ConfigError) as e:
        load_instructions(path)
    msg = str(e.value)
    assert "line 1" in msg
    for t in ("reach", "push", "pick", "place", "stack"):
        assert f"\n  {t} " in msg
    assert "--list-tasks" in msg


def test_instructions_file_reads_good_lines(tmp_path):
    path = tmp_path / "instr.jsonl"
    path.write_text(f'{GOOD}\n\n{{"task": "reach size=large color=blue", "instruction": "hi"}}\n')
    lines = load_instructions(path)
    assert [(ln.line, ln.task, ln.instruction) for ln in lines] == [
        (1, "pick color=red size=small", "lift the little red cube"),
        (3, "reach color=blue size=large", "hi"),
    ]
    with pytest.raises(FileNotFoundError):
        load_instructions(tmp_path / "missing.jsonl")


# --------------------------------------------------------------------------- one episode


def test_expert_succeeds_through_the_safety_layer(tiny_env_config):
    # the scripted expert through mmrobot run's controller and safety layer (the default)
    result = evaluate(
        "expert",
        EvalSettings(episodes=2, tasks=("reach", "pick"), splits=("train", "heldout"), workers=0),
        env_config=tiny_env_config,
    )
    assert result.settings.safety
    for split in ("train", "heldout"):
        for task in ("reach", "pick"):
            st = result.stats(split, task)
            assert (st.episodes, st.successes) == (2, 2), result.to_dict()["episodes"]
    for e in result.episodes:
        assert e.safety and e.reason == "success" and e.holds == 0
        # the layer did clamp (the expert's first moves are faster than the acceleration
        # limit allows), and every event is counted under its reason
        assert e.n_safety_events > 0
        assert all(
            r.split(":")[0] in ("velocity_limit", "acceleration_limit") for r in e.safety_events
        )
    doc = result.to_dict()
    assert doc["settings"]["safety"] is True
    assert list(doc["settings"]["safety_limits"]["required_streams"]) == ["joints"]
    total = doc["safety"]["train"]["all"]
    assert total["episodes"] == 4 and total["held_ticks"] == 0
    assert total["events"] == sum(total["by_reason"].values()) > 0
    assert total["events"] == sum(e.n_safety_events for e in result.episodes if e.split == "train")
    titles = [t.title for t in result.tables()]
    assert any("safety layer" in t for t in titles) and any("by reason" in t for t in titles)
    # without the layer (for comparison): the env applies the actions itself
    off = evaluate(
        "expert",
        EvalSettings(episodes=2, tasks=("reach", "pick"), splits=("train",), workers=0),
        env_config=tiny_env_config,
        safety=False,
    )
    assert off.stats("train").successes == 4
    assert all(not e.safety and e.safety_events == {} for e in off.episodes)
    assert [t.title for t in off.tables()][-1].startswith("safety layer off")
    # an unguided policy on the same seeds does not reach the block: success is not free
    still = evaluate(
        Recorder(),
        EvalSettings(episodes=4, tasks=("reach",), splits=("train",), workers=0),
        env_config=tiny_env_config,
        max_steps=15,
    )
    assert still.stats("train", "reach").successes == 0


def test_safety_path_follows_the_env_action_mode(tiny_env_config):
    from dataclasses import replace

    from mmrobot.deploy.safety import SafetyConfig, SimSafety

    assert tiny_env_config.action_mode == "joint"
    assert env_config_for_policy(tiny_specs(), safety=False).action_mode == "ee_delta"
    env = make_eval_env(replace(tiny_env_config, action_mode="ee_delta"))
    try:
        res = run_episode(env, Recorder(), task="reach", seed=0, max_steps=2)
        assert not res.safety and res.safety_events == {}
        with pytest.raises(ConfigError, match="joint targets"):
            run_episode(env, Recorder(), task="reach", seed=0, safety=SafetyConfig())
        with pytest.raises(ConfigError, match="joint targets"):
            SimSafety(env)
    finally:
        env.close()
    env = make_eval_env(tiny_env_config)
    try:  # the limits given to the episode are the ones applied
        slow = SafetyConfig(max_velocity_rad_s=0.05)
        res = run_episode(
            env, ScriptedExpertPolicy(env), task="reach", seed=0, max_steps=6, safety=slow
        )
        assert res.safety and any(r.startswith("velocity_limit:") for r in res.safety_events)
    finally:
        env.close()


@pytest.mark.parametrize(
    ("split", "removed"),
    [
        ("no_camera", {"scene_cam", "wrist_cam"}),
        ("no_lidar", {"lidar"}),
        ("no_force", {"ft"}),
        ("no_joints", {"joints", "ee_pose"}),  # ee_pose: forward kinematics of joints
    ],
)
def test_modality_removal_invalidates_what_the_policy_sees(tiny_env_config, split, removed):
    env = make_eval_env(split_env_config(tiny_env_config, split))
    try:
        policy = Recorder()
        res = run_episode(env, policy, task="reach", seed=3, max_steps=4)
    finally:
        env.close()
    assert res.steps == 4 and len(policy.seen) == 4
    # the safety layer requires the joints stream (as a launch file does): without it the arm
    # holds, exactly as on a robot whose joint encoders went silent
    if split == "no_joints":
        assert res.holds == 4 and res.safety_events == {"hold:stale:joints": 4}
    else:
        assert res.holds == 0
    for obs in policy.seen:
        for name, ok in obs.valid.items():
            assert ok == (name not in removed), (split, name, obs.t_ns)
        for name in removed:
            assert not np.any(obs.values[name])  # the synchronizer's "nothing" value


def test_heldout_split_uses_heldout_phrasings(tiny_env_config):
    from mmrobot.envs.instructions import all_instructions
    from mmrobot.envs.tasks import TaskSpec

    for split in ("train", "heldout"):
        env = make_eval_env(split_env_config(tiny_env_config, split))
        try:
            res = run_episode(env, Recorder(), task="pick", seed=5, max_steps=1)
        finally:
            env.close()
        assert res.instruction in all_instructions(TaskSpec.parse(res.task), split)


def test_randomized_split_perturbs_the_scene_and_train_does_not(tiny_env_config):
    seen = {}
    for split in ("train", "randomized"):
        env = make_eval_env(split_env_config(tiny_env_config, split))
        try:
            policy = Recorder()
            run_episode(env, policy, task="pick", seed=7, max_steps=1)
            scene = env.unwrapped.scene
            blocks = list(scene.ids.block_geom.values())
            moved = np.abs(scene.model.geom_rgba[blocks] - scene.nominal["geom_rgba"][blocks])
            seen[split] = (env.unwrapped.randomization_info, moved.max(), policy.seen[0])
        finally:
            env.close()
    assert seen["train"][0] == {} and seen["train"][1] == 0
    assert seen["randomized"][0] and seen["randomized"][1] > 0
    # same seed, same task: the camera sees another scene (light, colours, camera pose)
    a, b = seen["train"][2].values["scene_cam"], seen["randomized"][2].values["scene_cam"]
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 1


def test_instruction_swap_keeps_the_scene_and_names_another_block(tiny_env_config):
    from mmrobot.envs.instructions import all_instructions
    from mmrobot.envs.tasks import TaskSpec

    env = make_eval_env(split_env_config(tiny_env_config, "instruction_swap"))
    try:
        for task, seed in (("pick", 4), ("stack", 1)):
            plain, swapped = Recorder(), Recorder()
            ref = run_episode(env, plain, task=task, seed=seed, max_steps=1)
            res = run_episode(
                env, swapped, task=task, seed=seed, max_steps=1, swap_instruction=True
            )
            layout, named = TaskSpec.parse(res.layout_task), TaskSpec.parse(res.task)
            # the scene is the task's: the same episode, observation for observation
            assert res.layout_task == ref.task
            first, first_ref = swapped.seen[0], plain.seen[0]
            for name, value in first_ref.values.items():
                np.testing.assert_array_equal(first.values[name], value, err_msg=name)
            # the instruction names another block that stands on the table
            assert named.task == layout.task and named.block != layout.block
            assert env.unwrapped.scene.block_pos(*named.block)[2] > 0
            assert res.instruction in all_instructions(named, "train")
            assert swapped.instructions[0] == res.instruction != ref.instruction
            if task == "stack":  # the base stays; the block on top is the other one
                assert named.base_block == layout.base_block != named.block
            assert env.unwrapped.task == named  # what the success detector reads
            if hasattr(env.unwrapped, "block_start_pos"):  # what the pick goal is relative to
                start = env.unwrapped.block_start_pos
                now = env.unwrapped.scene.block_pos(*named.block)
                np.testing.assert_allclose(start, now, atol=2e-3)
            assert res.layout_task_success is False
        with pytest.raises(ConfigError, match="do not give one"):
            run_episode(env, Recorder(), task="pick", instruction="x", swap_instruction=True)
    finally:
        env.close()


def test_instruction_swap_success_counts_the_instructions_block(tiny_env_config, monkeypatch):
    result = evaluate(
        "expert",
        EvalSettings(episodes=2, tasks=("reach", "pick"), splits=("instruction_swap",), workers=0),
        env_config=tiny_env_config,
    )
    # the expert follows the env's task, which is the instruction's block: it succeeds
    assert result.stats("instruction_swap").successes == 4, result.to_dict()["episodes"]
    for e in result.episodes:
        assert e.layout_task is not None and e.layout_task != e.task
        assert e.layout_task_success is False  # it did the instruction's task, not the layout's
    # a policy that ignores the instruction and does the layout's task fails the split
    import mmrobot.train.eval.episode as ev  # where run_episode looks the function up

    swap = ev.swap_instruction_target

    def remember_the_layout(env, seed, split="train"):
        env.unwrapped.layout_task = env.unwrapped.task  # for _LayoutExpert to cheat with
        return swap(env, seed, split)

    monkeypatch.setattr(ev, "swap_instruction_target", remember_the_layout)
    habit = evaluate(
        _layout_expert,
        EvalSettings(episodes=2, tasks=("reach",), splits=("train", "instruction_swap"), workers=0),
        env_config=tiny_env_config,
    )
    assert habit.stats("train").successes == 2
    assert habit.stats("instruction_swap").successes == 0
    assert all(e.layout_task_success for e in habit.episodes if e.split == "instruction_swap")
    with pytest.raises(ConfigError, match="do not apply"):
        evaluate(
            Recorder(),
            EvalSettings(workers=0),
            instructions=[InstructionLine(1, "reach color=red size=small", "reach it")],
            splits=("instruction_swap",),
        )


class _LayoutExpert(ScriptedExpertPolicy):
    """The scripted expert of the task the scene was laid out for, whatever it is told."""

    def act(self, observation: Observation, instruction: str) -> ActionChunk:
        told = self.env.task
        self.env.task = getattr(self.env, "layout_task", told)
        try:
            return super().act(observation, instruction)
        finally:
            self.env.task = told


def _layout_expert(env):
    return _LayoutExpert(env)


def test_quick_success_for_training_time_checks(tiny_checkpoint):
    out = quick_success("expert", tasks=["reach"], episodes_per_task=2, workers=0)
    assert out["mean"] == 1.0 and out["per_task"] == {"reach": 1.0}
    assert out["per_split"] == {"train": {"mean": 1.0, "per_task": {"reach": 1.0}}}
    assert out["episodes"] == 2 and out["errors"] == 0 and out["seconds"] > 0
    # the trainer's call: a checkpoint folder, two splits, a short episode limit
    out = quick_success(
        tiny_checkpoint, ["reach", "pick"], 1, seed=0, workers=0,
        splits=("train", "instruction_swap"), max_steps=3,
    )  # fmt: skip
    assert out["episodes"] == 4 and out["errors"] == 0
    assert set(out["per_task"]) == {"reach", "pick"}
    assert set(out["per_split"]) == {"train", "instruction_swap"}
    assert 0.0 <= out["mean"] <= 1.0 and json.dumps(out)  # a metrics row as it is


def test_replanning_and_ensembling_follow_the_chunks(tiny_env_config):
    env = make_eval_env(tiny_env_config)
    chunk = np.zeros((4, 7), np.float32)
    chunk[:, 0] = [0.004, 0.008, 0.012, 0.016]  # dx differs per chunk step
    chunk[:, 6] = 1.0
    sent = []
    try:
        policy = Recorder(actions=chunk)
        res = run_episode(
            env, policy, task="reach", seed=0, max_steps=8, replan_every=4, ensemble_decay=None,
            on_step=lambda obs, a: sent.append(a.copy()),
        )  # fmt: skip
        assert res.policy_calls == 2 and len(policy.seen) == 2
        assert [round(float(a[0]), 4) for a in sent] == [0.004, 0.008, 0.012, 0.016] * 2
        # replan every tick with equal weights: tick k averages steps 0..min(k, 3) of the chunks
        sent.clear()
        policy = Recorder(actions=chunk)
        res = run_episode(
            env, policy, task="reach", seed=0, max_steps=5, replan_every=1, ensemble_decay=0.0,
            on_step=lambda obs, a: sent.append(a.copy()),
        )  # fmt: skip
        assert res.policy_calls == 5
        want = [0.004, 0.006, 0.008, 0.010, 0.010]  # mean of 0.004 * (1..k+1), capped at H
        assert [round(float(a[0]), 4) for a in sent] == want
    finally:
        env.close()


def test_non_finite_chunks_are_rejected_and_the_arm_holds(tiny_env_config):
    env = make_eval_env(tiny_env_config)
    bad = np.full((2, 7), np.nan, np.float32)
    sent = []
    try:
        res = run_episode(
            env, Recorder(actions=bad), task="reach", seed=0, max_steps=3,
            on_step=lambda obs, a: sent.append(a.copy()),
        )  # fmt: skip
    finally:
        env.close()
    assert res.rejected_chunks == 3 and res.holds == 3
    assert res.safety_events == {"rejected_chunk": 3, "hold": 3}
    assert all(np.array_equal(a, [0, 0, 0, 0, 0, 0, 1]) for a in sent)


def test_wrong_action_dimension_is_a_clear_error(tiny_env_config):
    env = make_eval_env(tiny_env_config)
    try:
        with pytest.raises(ConfigError, match=r"\(H, 7\)"):
            run_episode(env, Recorder(actions=np.zeros((4, 3))), task="reach", seed=0)
    finally:
        env.close()


def test_policy_spec_mismatch_names_the_stream():
    from dataclasses import replace

    specs = list(tiny_specs())
    specs[0] = replace(specs[0], shape=(32, 48, 3))
    with pytest.raises(ConfigError, match="scene_cam"):
        env_config_for_policy(specs)
    cfg = env_config_for_policy(tiny_specs(), max_steps=7)
    assert cfg.max_steps == 7 and cfg.sensors.image_size == 32 and cfg.sensors.lidar_rays == 64


def test_policy_paths(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="neither a checkpoint"):
        load_policy(tmp_path / "empty")
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "policy.onnx").write_bytes(b"")
    try:
        from mmrobot.deploy import OnnxPolicy  # noqa: F401
    except ImportError:
        from mmrobot.core.errors import DependencyNotInstalled

        with pytest.raises(DependencyNotInstalled, match="OnnxPolicy"):
            load_policy(tmp_path / "export")
    else:  # an ONNX file without its sidecar
        with pytest.raises(FileNotFoundError, match="policy.json"):
            load_policy(tmp_path / "export" / "policy.onnx")


def test_exported_onnx_policy_evaluates_like_the_checkpoint(tiny_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from mmrobot.deploy import export_onnx

    export_onnx(tiny_checkpoint, tmp_path / "onnx")
    settings = EvalSettings(episodes=1, tasks=("pick",), splits=("train",), workers=0, max_steps=6)
    runs = {}
    for name, path in (("torch", tiny_checkpoint), ("onnx", tmp_path / "onnx" / "policy.onnx")):
        sent = []
        env = make_eval_env(env_config_for_policy(tiny_specs()))
        try:
            res = run_episode(
                env, load_policy(path), task="pick", seed=2, max_steps=6,
                on_step=lambda obs, a, sent=sent: sent.append(a.copy()),
            )  # fmt: skip
        finally:
            env.close()
        assert res.steps == 6 and res.policy_calls == 6
        runs[name] = np.stack(sent)
    # same observations and chunks -> (nearly) the same commands; a token may flip a bin
    # where two logits tie within float error, so compare most of the entries
    close = np.isclose(runs["torch"], runs["onnx"], atol=1e-5)
    assert close.mean() > 0.9, (runs["torch"], runs["onnx"])
    result = evaluate(str(tmp_path / "onnx"), settings)
    assert result.policy == str(tmp_path / "onnx")
    assert not result.errors and result.stats("train", "pick").episodes == 1


def test_bad_checkpoint_fails_before_workers_start(tiny_checkpoint, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, bad)
    (bad / "model.safetensors").write_bytes((bad / "model.safetensors").read_bytes()[:100])
    with pytest.raises(ConfigError, match="corrupt or truncated"):
        evaluate(bad, EvalSettings(workers=2, tasks=("reach",), episodes=1))


def test_a_dying_worker_is_an_error_not_a_hang(tiny_env_config):
    from mmrobot.core.errors import MmrobotError

    with pytest.raises(MmrobotError, match="worker process died"):
        evaluate(
            _die, EvalSettings(workers=1, tasks=("reach",), episodes=2, splits=("train",)),
            env_config=tiny_env_config,
        )  # fmt: skip


def test_settings_are_validated():
    with pytest.raises(ConfigError, match="unknown split"):
        EvalSettings(splits=("train", "no_smell"))
    with pytest.raises(ConfigError, match="episodes"):
        EvalSettings(episodes=0)
    with pytest.raises(ConfigError, match="fork"):
        EvalSettings(start_method="fork")
    with pytest.raises(ConfigError, match="workers=0"):
        evaluate(Recorder(), EvalSettings(workers=1, tasks=("reach",)))
    with pytest.raises(ConfigError, match="unknown task"):
        evaluate(Recorder(), EvalSettings(workers=0, tasks=("juggle",)))


# --------------------------------------------------------------------------- end to end


def test_cli_end_to_end_tiny_policy_one_worker(tiny_checkpoint, tmp_path, capsys):
    from mmrobot.cli import main

    out = tmp_path / "eval.json"
    argv = ["eval", "--policy", str(tiny_checkpoint), "--tasks", "reach", "--episodes", "2"]
    argv += ["--max-steps", "8", "--splits", "train,no_lidar", "--workers", "1"]
    argv += ["--json", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "no_lidar" in printed and "reach" in printed
    doc = json.loads(out.read_text())
    assert doc["splits"] == ["train", "no_lidar"]
    assert doc["tasks"] == ["reach"]
    assert doc["errors"] == 0
    for split in ("train", "no_lidar"):
        for row in ("reach", "all"):
            r = doc["results"][split][row]
            assert r["episodes"] == 2
            assert isinstance(r["successes"], int) and 0 <= r["successes"] <= 2
            lo, hi = r["ci95"]
            assert 0.0 <= lo <= r["rate"] <= hi <= 1.0
            assert (lo, hi) == pytest.approx(wilson_interval(r["successes"], 2))
    eps = doc["episodes"]
    assert len(eps) == 4
    assert sorted((e["split"], e["seed"]) for e in eps) == [
        ("no_lidar", 0),
        ("no_lidar", 1),
        ("train", 0),
        ("train", 1),
    ]
    for e in eps:
        assert e["error"] is None
        assert 1 <= e["steps"] <= 8
        assert e["policy_calls"] == e["steps"]  # replan every tick by default
        assert e["task"].startswith("reach color=")
    # same seeds in both splits: same scenes and instructions
    by = {(e["split"], e["seed"]): e for e in eps}
    assert by["train", 0]["task"] == by["no_lidar", 0]["task"]
    assert by["train", 0]["instruction"] == by["no_lidar", 0]["instruction"]
    # through the safety layer by default; its events per episode, per reason, in the JSON
    assert doc["format_version"] == 2 and doc["settings"]["safety"] is True
    assert all(e["safety"] is True for e in eps)
    row = doc["safety"]["train"]["reach"]
    assert row["events"] == sum(
        sum(e["safety_events"].values()) for e in eps if e["split"] == "train"
    )
    assert row["by_reason"] == {
        r: sum(e["safety_events"].get(r, 0) for e in eps if e["split"] == "train")
        for r in row["by_reason"]
    }
    assert "safety layer" in printed and "by reason" in printed
    # --no-safety, for comparison
    argv = ["eval", "--policy", str(tiny_checkpoint), "--tasks", "reach", "--episodes", "1"]
    argv += ["--max-steps", "3", "--splits", "train", "--workers", "0", "--no-progress"]
    assert main([*argv, "--no-safety", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["safety"] is False and doc["episodes"][0]["safety_events"] == {}
    assert "safety layer off" in capsys.readouterr().out


def test_instructions_file_end_to_end(tiny_checkpoint, tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text(
        '{"task": "reach color=blue size=large", "instruction": "touch the big blue one"}\n'
        '{"task": "pick color=red size=small", "instruction": "lift the small red cube"}\n'
    )
    from mmrobot.policies.torch_policy import TorchPolicy

    policy = TorchPolicy.from_checkpoint(tiny_checkpoint)
    seen: list[str] = []
    result = evaluate(
        Recorder(), EvalSettings(episodes=1, workers=0, max_steps=3), instructions=path,
        splits=("instructions", "no_force"),
    )  # fmt: skip
    doc = result.to_dict()
    assert doc["splits"] == ["instructions", "no_force"]
    assert doc["tasks"] == ["reach", "pick"]
    assert [(ln["line"], ln["split"], ln["episodes"]) for ln in doc["lines"]] == [
        (1, "instructions", 1),
        (2, "instructions", 1),
        (1, "no_force", 1),
        (2, "no_force", 1),
    ]
    for ep in doc["episodes"]:
        assert ep["error"] is None
        want = {1: ("reach color=blue size=large", "touch the big blue one")}
        want[2] = ("pick color=red size=small", "lift the small red cube")
        assert (ep["task"], ep["instruction"]) == want[ep["line"]]
    # a real policy through the same path, in process
    res = evaluate(
        policy, EvalSettings(episodes=1, workers=0, max_steps=2), instructions=path,
        progress=lambda ep: seen.append(ep.instruction),
    )  # fmt: skip
    assert sorted(seen) == ["lift the small red cube", "touch the big blue one"]
    assert res.stats("instructions").episodes == 2 and not res.errors
    with pytest.raises(ConfigError, match="phrasing comes from the file"):
        evaluate(Recorder(), EvalSettings(workers=0), instructions=path, splits=("train",))
