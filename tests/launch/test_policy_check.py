"""Issue 13, ``--check`` validates what ``run`` will reject: the policy's checkpoint or ONNX
export can be read and its streams match what the simulation or the rig provides; the launch
file's ``[run] instructions`` are read as a run reads them. Each bad launch file or override
exits 2 with a message naming the stream, what the policy expects and what is provided.

Also: ``eval`` mode runs under the launch file's ``[safety]`` limits, and ``train`` mode takes
``--resume`` and ``--overwrite`` as ``mmrobot train`` does.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from mmrobot.cli import main

ROOT = Path(__file__).resolve().parents[2]


def check(path: Path, *overrides: str) -> int:
    return main(["launch", str(path), *overrides, "--check"])


def edited_checkpoint(src: Path, dst: Path, edit) -> Path:
    """A copy of the checkpoint ``src`` whose config.json document ``edit(doc)`` changed."""
    shutil.copytree(src, dst)
    doc = json.loads((dst / "config.json").read_text())
    edit(doc)
    (dst / "config.json").write_text(json.dumps(doc))
    return dst


def set_stream(name: str, **changes):
    def edit(doc):
        for s in doc["config"]["streams"]:
            if s["name"] == name:
                s.update(changes)

    return edit


def add_stream(doc):
    doc["config"]["streams"].append(
        {
            "name": "tool_temp",
            "modality": "force",
            "shape": [1],
            "dtype": "float32",
            "rate_hz": 10.0,
            "optional": False,
        }
    )


ONNX_MODEL = b"not a real graph; the sidecar's size and hash are what --check reads"
ONNX_BYTES = len(ONNX_MODEL)


def fake_export(checkpoint: Path, dst: Path, image_size: int | None = None) -> Path:
    """An export folder: a sidecar with the checkpoint's config (cameras resized) and a
    model file whose size and hash the sidecar records. --check never starts ONNX Runtime."""
    from mmrobot.deploy.sidecar import Sidecar
    from mmrobot.policies.checkpoint import read_checkpoint_config

    config, _ = read_checkpoint_config(checkpoint)
    if image_size is not None:
        from dataclasses import replace

        streams = [
            replace(s, shape=(image_size, image_size, 3)) if s.modality == "camera" else s
            for s in config.streams
        ]
        config = config.replace(streams=tuple(streams))
    dst.mkdir(parents=True)
    model = ONNX_MODEL
    (dst / "policy.onnx").write_bytes(model)
    Sidecar(
        config=config,
        input_names=tuple(s.name for s in config.streams),
        output_names=("action_logits", "action_tokens"),
        precision="fp32",
        model_file="policy.onnx",
        model_bytes=len(model),
        model_sha256=hashlib.sha256(model).hexdigest(),
        opset=17,
    ).write(dst)
    return dst


def use_policy(launch: Path, key: str, value: Path) -> None:
    """Point the launch file's [policy] at ``key = value`` (checkpoint or onnx)."""
    lines = launch.read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("checkpoint = "))
    lines[at] = f'{key} = "{value}"'
    launch.write_text("\n".join(lines) + "\n")


# --------------------------------------------------------------------------- simulation
# (id, how the case is made, what the message must contain)
# "how": a list of overrides, or a function (checkpoint, tmp_path, launch) -> overrides
def _checkpoint_case(edit):
    def make(checkpoint, tmp_path, launch):
        use_policy(launch, "checkpoint", edited_checkpoint(checkpoint, tmp_path / "edited", edit))
        return []

    return make


def _files_case(damage):
    def make(checkpoint, tmp_path, launch):
        bad = tmp_path / "damaged"
        shutil.copytree(checkpoint, bad)
        damage(bad)
        use_policy(launch, "checkpoint", bad)
        return []

    return make


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _export_case(image_size=None, damage=None):
    def make(checkpoint, tmp_path, launch):
        export = fake_export(checkpoint, tmp_path / "export", image_size)
        if damage:
            damage(export)
        use_policy(launch, "onnx", export)
        return []

    return make


SIM_CASES = [
    (
        "cameras-smaller-than-the-policy-reads",
        ["sim.image_size=64"],
        [
            "policy.checkpoint = ",
            "stream 'scene_cam': the policy expects uint8 (96, 96, 3), the simulation "
            "(sim.image_size = 64) provides uint8 (64, 64, 3)",
            "stream 'wrist_cam': the policy expects uint8 (96, 96, 3)",
        ],
    ),
    (
        "joint-history-differs",
        _checkpoint_case(set_stream("joints", history=5)),
        [
            "stream 'joints': the policy expects float32 (7,), history 5, the simulation "
            "(sim.image_size = 96) provides float32 (7,), history 10"
        ],
    ),
    (
        "joint-dtype-differs",
        _checkpoint_case(set_stream("joints", dtype="float64")),
        ["stream 'joints': the policy expects float64 (7,), history 10", "float32 (7,)"],
    ),
    (
        "camera-dtype-differs",
        _checkpoint_case(set_stream("wrist_cam", dtype="float32")),
        [
            "stream 'wrist_cam': the policy expects float32 (96, 96, 3), the simulation "
            "(sim.image_size = 96) provides uint8 (96, 96, 3)"
        ],
    ),
    (
        "a-needed-stream-the-simulation-lacks",
        _checkpoint_case(add_stream),
        [
            "stream 'tool_temp': the policy expects float32 (1,), the simulation "
            "(sim.image_size = 96) provides no such stream (it has ['ee_pose', 'ft', 'joints'"
        ],
    ),
    (
        "checkpoint-without-config",
        _files_case(lambda d: (d / "config.json").unlink()),
        ["no config.json in ", "a checkpoint folder holds config.json and model.safetensors"],
    ),
    (
        "checkpoint-config-not-json",
        _files_case(lambda d: (d / "config.json").write_text('{"kind": "mmrobot.fus')),
        ["config.json: not valid JSON", "the checkpoint is corrupt or truncated"],
    ),
    (
        "checkpoint-config-not-an-object",
        _files_case(lambda d: (d / "config.json").write_text("[1, 2]")),
        ["config.json: not an mmrobot policy checkpoint (kind 'list')"],
    ),
    (
        "checkpoint-config-of-a-newer-format",
        _checkpoint_case(lambda doc: doc.update(format_version=99)),
        ["config.json", "format_version 99"],
    ),
    (
        "checkpoint-without-weights",
        _files_case(lambda d: (d / "model.safetensors").unlink()),
        ["no model.safetensors in "],
    ),
    (
        "checkpoint-weights-truncated",
        _files_case(lambda d: _truncate(d / "model.safetensors")),
        ["model.safetensors: cannot read the weights", "corrupt or truncated"],
    ),
    (
        "checkpoint-is-a-file",
        lambda ckpt, tmp, launch: [f'policy.checkpoint="{ckpt / "config.json"}"'],
        ["is not a checkpoint folder (config.json + model.safetensors)"],
    ),
    (
        "onnx-cameras-differ",
        _export_case(image_size=64),
        [
            "policy.onnx = ",
            "stream 'scene_cam': the policy expects uint8 (64, 64, 3), the simulation "
            "(sim.image_size = 96) provides uint8 (96, 96, 3)",
        ],
    ),
    (
        "onnx-without-sidecar",
        _export_case(damage=lambda d: (d / "policy.json").unlink()),
        ["no ONNX policy sidecar at ", "policy.json"],
    ),
    (
        "onnx-model-truncated",
        _export_case(damage=lambda d: _truncate(d / "policy.onnx")),
        ["policy.onnx has ", " bytes but the sidecar recorded ", "the file is truncated"],
    ),
    (
        "onnx-model-replaced",
        _export_case(damage=lambda d: (d / "policy.onnx").write_bytes(b"x" * ONNX_BYTES)),
        ["does not match the SHA-256 in policy.json"],
    ),
    # [run] instructions, read as `mmrobot run` reads them
    (
        "instruction-blank",
        ['run.instructions=["put the red block in the bin", " "]'],
        ["run.instructions[1]: instruction ' ' is empty"],
    ),
    (
        "instruction-longer-than-the-policy-reads",
        [
            'run.instructions=["put the red block in the bin, and please do it slowly and carefully"]'
        ],
        [
            "run.instructions[0]: instruction 'put the red block in the bin, and please...' is "
            "67 bytes; the policy reads 62 (language.max_len 64 tokens"
        ],
    ),
    (
        "instruction-unreadable",
        ['run.instructions=["sing"]'],
        ["run.instructions[0]: instruction 'sing' names no known block"],
    ),
    (
        "instruction-ambiguous",
        ['run.instructions=["push the red block on the left"]'],
        ["run.instructions[0]: instruction 'push the red block on the left' is ambiguous"],
    ),
]


def test_the_shipped_sim_file_passes_with_a_matching_policy(sim, tmp_path, checkpoint, capsys):
    assert check(sim) == 0
    use_policy(sim, "onnx", fake_export(checkpoint, tmp_path / "export"))
    assert check(sim) == 0, capsys.readouterr().err


@pytest.mark.parametrize(
    ("how", "expected"), [c[1:] for c in SIM_CASES], ids=[c[0] for c in SIM_CASES]
)
def test_sim_check_refuses_a_policy_or_instruction_that_run_refuses(
    sim, tmp_path, checkpoint, capsys, how, expected
):
    overrides = how if isinstance(how, list) else how(checkpoint, tmp_path, sim)
    assert check(sim, *overrides) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)


# --------------------------------------------------------------------------- rig
def _rig_case(old: str, new: str, edit=None):
    def make(checkpoint, tmp_path, launch):
        rig = tmp_path / "rig.toml"
        text = rig.read_text()
        assert old in text
        rig.write_text(text.replace(old, new))
        if edit is not None:
            use_policy(
                launch, "checkpoint", edited_checkpoint(checkpoint, tmp_path / "edited", edit)
            )

    return make


RIG_CASES = [
    (
        "ft-history-differs",
        _rig_case("history = 10, latency_ms = 2", "history = 5, latency_ms = 2"),
        [
            "policy.checkpoint = ",
            "stream 'ft': the policy expects float32 (6,), history 10, the rig ",
            "rig.toml provides float32 (6,), history 5",
        ],
    ),
    (
        "camera-shape-differs",
        _rig_case(
            'name = "wrist_cam", shape = [96, 96, 3]', 'name = "wrist_cam", shape = [64, 64, 3]'
        ),
        ["stream 'wrist_cam': the policy expects uint8 (96, 96, 3), the rig ", "uint8 (64, 64, 3)"],
    ),
    (
        "a-needed-stream-the-rig-lacks",
        _rig_case('name = "lidar"', 'name = "base_scan"', set_stream("lidar", optional=False)),
        [
            "stream 'lidar': the policy expects float32 (360, 3), the rig ",
            "provides no such stream (it has ['base_scan', 'ft', 'joints', 'scene_cam', "
            "'wrist_cam'])",
        ],
    ),
]


@pytest.mark.parametrize(
    ("how", "expected"), [c[1:] for c in RIG_CASES], ids=[c[0] for c in RIG_CASES]
)
def test_robot_check_refuses_a_policy_the_rig_cannot_feed(
    robot, tmp_path, checkpoint, capsys, how, expected
):
    how(checkpoint, tmp_path, robot)
    assert check(robot) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)


def test_a_missing_optional_stream_is_no_problem(robot, tmp_path, checkpoint):
    """The policy sees the validity mask of a stream it marks optional."""
    _rig_case('name = "lidar"', 'name = "base_scan"')(checkpoint, tmp_path, robot)
    assert check(robot) == 0


# --------------------------------------------------------------------------- run and eval
def test_run_refuses_a_mismatched_policy_before_anything_opens(sim, monkeypatch, capsys):
    def no_session(*args, **kwargs):
        raise AssertionError("a session was started")

    monkeypatch.setattr("mmrobot.launch.sim.SimSession", no_session)
    assert main(["run", str(sim), "-i", "lift the red block", "sim.image_size=64"]) == 2
    assert "stream 'scene_cam': the policy expects uint8 (96, 96, 3)" in capsys.readouterr().err
    # `mmrobot launch` in run mode checks its instructions before anything opens, too
    assert main(["launch", str(sim), 'run.instructions=["sing"]']) == 2
    assert "run.instructions[0]: instruction 'sing'" in capsys.readouterr().err


EVAL_LAUNCH = """
mode = "eval"
[sim]
[policy]
checkpoint = "{ckpt}"
[safety]
max_velocity_rad_s = 0.5
workspace_high_m = [0.6, 0.5, 0.5]
[eval]
splits = ["train"]
episodes = 1
workers = 0
"""


def test_eval_check_refuses_streams_the_simulation_cannot_make(tmp_path, checkpoint, capsys):
    path = tmp_path / "launch" / "eval.toml"
    path.parent.mkdir()
    path.write_text(EVAL_LAUNCH.format(ckpt=checkpoint))
    assert check(path) == 0
    edited = edited_checkpoint(checkpoint, tmp_path / "edited", add_stream)
    assert check(path, f'policy.checkpoint="{edited}"') == 2
    assert "'tool_temp': the simulator has no such stream" in capsys.readouterr().err


def test_eval_mode_runs_under_the_launch_files_safety_limits(tmp_path, checkpoint, monkeypatch):
    from mmrobot.deploy.safety import SafetyConfig, SimSafety
    from mmrobot.envs.tabletop import EnvConfig, TabletopEnv
    from mmrobot.train.eval import EvalResult

    calls = []

    def evaluate(policy, settings, **kwargs):  # what `mmrobot launch` hands the evaluation
        calls.append((policy, settings))
        return EvalResult(str(policy), settings, settings.splits, ("reach",))  # no episodes

    monkeypatch.setattr("mmrobot.train.eval.evaluate", evaluate)
    path = tmp_path / "launch" / "eval.toml"
    path.parent.mkdir()
    path.write_text(EVAL_LAUNCH.format(ckpt=checkpoint))
    assert main(["launch", str(path), "safety.max_gripper_force_n=10"]) == 0
    ((policy, settings),) = calls
    assert policy == str(checkpoint) and settings.splits == ("train",)
    limits = settings.safety_limits
    assert isinstance(limits, SafetyConfig)
    assert limits.max_velocity_rad_s == 0.5 and limits.max_gripper_force_n == 10.0
    assert limits.workspace_high_m == (0.6, 0.5, 0.5)
    # the layer each episode runs through is built from them (mmrobot.train.eval.pool._safety_for)
    env = TabletopEnv(EnvConfig(action_mode="joint"), render_mode=None)
    try:
        layer = SimSafety(env, limits).layer
    finally:
        env.close()
    assert layer.limits.max_velocity_rad_s == (0.5,) * 6
    assert layer.limits.workspace_high_m == (0.6, 0.5, 0.5)
    assert layer.limits.max_gripper_force_n == 10.0
    # a launch file that sets no limit evaluates under the defaults, as `mmrobot eval` does
    path.write_text(EVAL_LAUNCH.format(ckpt=checkpoint).split("[safety]")[0] + "[eval]\n")
    assert main(["launch", str(path)]) == 0
    assert calls[-1][1].safety_limits == SafetyConfig()


# --------------------------------------------------------------------------- train
@pytest.fixture
def train_launch(tmp_path):
    """A train-mode launch file whose run folder holds a run, and whose dataset is missing:
    the refusal comes before the dataset is read, anything past it stops at the dataset."""
    run = tmp_path / "run"
    (run / "checkpoint").mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    config = tmp_path / "train.toml"
    config.write_text(
        f'[train]\npolicy = "{ROOT / "policies" / "default.toml"}"\n'
        f'dataset = "{tmp_path / "missing.h5"}"\nout = "{run}"\n'
        "steps = 2\nbatch_size = 2\nwarmup_steps = 1\nthreads = 1\ncompile = false\n"
    )
    path = tmp_path / "launch" / "train.toml"
    path.parent.mkdir()
    path.write_text(f'mode = "train"\n[train]\nconfig = "{config}"\n')
    return path


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ([], r"already holds a training run \(checkpoint, metrics.jsonl\); pass --resume"),
        (["--resume", "--overwrite"], "--resume continues a run and --overwrite replaces it"),
        (["--resume"], r"dataset '.*missing.h5' does not exist"),  # past the refusal
        (["--overwrite"], r"dataset '.*missing.h5' does not exist"),
    ],
)
def test_train_mode_takes_resume_and_overwrite(train_launch, tmp_path, capsys, flags, message):
    import re

    assert main(["launch", str(train_launch), *flags]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err
    run = tmp_path / "run"  # --overwrite clears a run only once the dataset has been read
    assert (run / "metrics.jsonl").is_file() and (run / "checkpoint").is_dir()


def test_resume_and_overwrite_apply_only_where_they_mean_something(sim, capsys):
    assert main(["launch", str(sim), "--resume", "--check"]) == 2
    assert "--resume applies in train mode; " in capsys.readouterr().err
