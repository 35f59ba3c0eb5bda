"""Evaluation set-up: split names, task specs, instruction files, policies to evaluate,
and the simulated environment each split runs in (see :mod:`mmrobot.train.evaluate`)."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrobot.core.errors import ConfigError, DependencyNotInstalled
from mmrobot.core.types import ActionChunk, Observation, StreamSpec
from mmrobot.deploy.safety import SafetyConfig
from mmrobot.policies.base import Policy

if TYPE_CHECKING:
    from mmrobot.envs.tabletop import EnvConfig

EVAL_FORMAT_VERSION = 2  # 2: safety layer on by default, per-reason safety events, swap split
#: Split name -> modality whose streams deliver nothing in that split.
MODALITY_SPLITS: dict[str, str] = {
    "no_camera": "camera",
    "no_lidar": "lidar",
    "no_force": "force",
    "no_joints": "joints",
}
INSTRUCTIONS_SPLIT = "instructions"
#: The grounding split: the task's scene, an instruction naming another block on the table.
SWAP_SPLIT = "instruction_swap"
DEFAULT_SPLITS: tuple[str, ...] = ("train", "heldout", SWAP_SPLIT, *MODALITY_SPLITS)
SPLIT_NAMES: tuple[str, ...] = (*DEFAULT_SPLITS, INSTRUCTIONS_SPLIT)
_Z95 = 1.959963984540054  # standard normal quantile for a two-sided 95 % interval
_ACTION_DIM = 7

# A policy to evaluate: a checkpoint / ONNX path, the word "expert", a Policy object
# (in-process only), or a picklable callable env -> Policy.
PolicySource = str | Path | Policy | Callable[[Any], Policy]


# --------------------------------------------------------------------------- task specs


def _param_values(param: str) -> tuple[str, ...]:
    from mmrobot.envs import names

    if param.endswith("color"):
        return tuple(names.COLORS)
    if param.endswith("size"):
        return tuple(names.SIZES)
    if param == "zone":
        return tuple(names.ZONES)
    raise ConfigError(f"no value list for task parameter {param!r}")


def all_task_specs() -> list[str]:
    """Every complete task spec, one line each, as instructions files take them.

    E.g. ``pick color=red size=small``; each parses back with :meth:`TaskSpec.parse`.
    """
    from mmrobot.envs.tasks import TASKS, TaskSpec

    out = []
    for name, task in TASKS.items():
        for combo in itertools.product(*(_param_values(p) for p in task.params)):
            try:
                spec = TaskSpec(name, dict(zip(task.params, combo)))
            except ConfigError:  # e.g. stack with the block on itself
                continue
            out.append(spec.format())
    return out


# --------------------------------------------------------------------------- instructions file


@dataclass(frozen=True)
class InstructionLine:
    """One line of a user's instructions file (``line`` is 1-based)."""

    line: int
    task: str
    instruction: str


def load_instructions(path: str | Path) -> list[InstructionLine]:
    """Read a JSON Lines file of ``{"task": TASK_SPEC, "instruction": TEXT}`` objects.

    ``TASK_SPEC`` is a complete task spec as ``mmrobot eval --list-tasks`` prints it. Blank
    lines are skipped. Any bad line raises :class:`ConfigError` naming the file, the line
    number and what is wrong.
    """
    from mmrobot.envs.tasks import TaskSpec, list_tasks

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instructions file {str(path)!r} not found")
    out: list[InstructionLine] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e})") from e
    example = '{"task": "pick color=red size=small", "instruction": "lift the red cube"}'
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path} line {i}"
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e.msg}); expected e.g. {example}") from e
        if not isinstance(doc, dict):
            raise ConfigError(
                f"{where}: expected a JSON object, got {type(doc).__name__}; e.g. {example}"
            )
        missing = [k for k in ("task", "instruction") if k not in doc]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {missing}; e.g. {example}")
        extra = sorted(set(doc) - {"task", "instruction"})
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {extra}; only 'task' and 'instruction'")
        task, instruction = doc["task"], doc["instruction"]
        if not isinstance(task, str):
            raise ConfigError(f"{where}: 'task' must be a string, got {type(task).__name__}")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigError(f"{where}: 'instruction' must be a non-empty string")
        try:
            spec = TaskSpec.parse(task)
        except ConfigError as e:
            valid = "\n  ".join(list_tasks())
            raise ConfigError(
                f"{where}: unknown task spec {task!r}: {e}\nvalid task specs (every "
                f"combination is listed by `mmrobot eval --list-tasks`):\n  {valid}"
            ) from e
        if not spec.complete:
            from mmrobot.envs.tasks import TASKS

            lack = [p for p in TASKS[spec.task].params if p not in spec.params]
            raise ConfigError(
                f"{where}: task spec {task!r} is incomplete (missing {lack}); give every "
                f"parameter so the instruction and the scene agree, e.g. "
                f"{_example_spec(spec.task)!r} (see `mmrobot eval --list-tasks`)"
            )
        out.append(InstructionLine(i, spec.format(), instruction.strip()))
    if not out:
        raise ConfigError(f"{path}: no instructions (one JSON object per line, e.g. {example})")
    return out


def _example_spec(task: str) -> str:
    return next(s for s in all_task_specs() if s.split()[0] == task)


# --------------------------------------------------------------------------- policies


def load_policy(path: str | Path, device: str = "cpu") -> Policy:
    """Load a policy from a torch checkpoint folder or an exported ONNX model.

    Args:
        path: a checkpoint folder (``config.json`` + ``model.safetensors``), or an ONNX
            export (``mmrobot export``): its folder, its ``policy.onnx`` or its ``policy.json``.
        device: torch device for checkpoints.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"policy {str(p)!r} not found; give a checkpoint folder (config.json + "
            "model.safetensors) or an exported ONNX model (.onnx file or its folder)"
        )
    if p.is_dir() and (p / "model.safetensors").is_file():
        from mmrobot.policies.torch_policy import TorchPolicy

        return TorchPolicy.from_checkpoint(p, device=device)
    onnx_dir = p.parent if p.is_file() and p.suffix in (".onnx", ".json") else p
    if p.suffix in (".onnx", ".json") or (
        p.is_dir() and ((p / "policy.json").is_file() or any(p.glob("*.onnx")))
    ):
        try:
            from mmrobot.deploy import OnnxPolicy
        except ImportError as e:
            raise DependencyNotInstalled(
                f"{str(p)!r} is an ONNX model, but mmrobot.deploy.OnnxPolicy cannot be imported "
                f"({e}); install onnxruntime (pip install onnxruntime) or evaluate the torch "
                "checkpoint folder instead"
            ) from e
        # the export folder holds policy.onnx and its sidecar policy.json
        return OnnxPolicy(p if p.suffix == ".json" else onnx_dir)
    raise ConfigError(
        f"{str(p)!r} is neither a checkpoint folder (config.json + model.safetensors) nor an "
        "ONNX export (a folder with policy.onnx + policy.json, from `mmrobot export`)"
    )


def policy_stream_specs(policy: Policy) -> tuple[StreamSpec, ...] | None:
    """The observation spec a policy declares (``policy.config.streams``), if any."""
    cfg = getattr(policy, "config", None)
    streams = getattr(cfg, "streams", None)
    if streams is None:
        streams = getattr(policy, "streams", None) or getattr(policy, "stream_specs", None)
    if streams is None:
        return None
    return tuple(streams)


class ScriptedExpertPolicy(Policy):
    """The env's scripted expert behind the :class:`Policy` interface (a privileged baseline).

    It reads the true scene state, not the observation, so it measures the evaluation
    harness and the task suite, not perception. Each call returns a one-step chunk.

    Args:
        env: the :class:`~mmrobot.envs.tabletop.TabletopEnv` being evaluated (or a wrapper),
            in either action mode: its end-effector actions reach a joint-target env
            through the same Cartesian controller (:class:`~mmrobot.deploy.safety.SimSafety`).
    """

    def __init__(self, env: Any) -> None:
        from mmrobot.envs.experts import ScriptedExpert

        self.env = env.unwrapped
        self.expert = ScriptedExpert(_EeDeltaView(self.env))
        self._episode_task: Any = None

    def reset(self) -> None:
        self._episode_task = None

    def act(self, observation: Observation, instruction: str) -> ActionChunk:
        if self._episode_task is not self.env.task:  # first call of an episode
            self.expert.reset()
            self._episode_task = self.env.task
        action = self.expert.act().astype(np.float32)[None]
        return ActionChunk(observation.t_ns, action, self.env.control_period_ns)


class _EeDeltaView:
    """The env as :class:`~mmrobot.envs.experts.ScriptedExpert` insists on seeing it (in
    ``ee_delta`` action mode). On the safety path the env takes joint targets, but the
    expert's actions reach it through the env's own Cartesian controller, whose target the
    expert tracks, so everything it reads (scene, task, controller target) is the same."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.config = replace(env.config, action_mode="ee_delta")

    @property
    def unwrapped(self) -> _EeDeltaView:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


def expert_policy_factory(env: Any) -> Policy:
    """``env -> ScriptedExpertPolicy(env)``: the policy source behind ``--policy expert``."""
    return ScriptedExpertPolicy(env)


# --------------------------------------------------------------------------- environments


def env_config_for_policy(
    specs: Sequence[StreamSpec] | None,
    max_steps: int | None = None,
    render_size: int = 256,
    safety: bool = True,
) -> EnvConfig:
    """An :class:`EnvConfig` whose simulated sensors produce the streams ``specs`` expects.

    Camera size and lidar ray count are read from the specs; optional sim streams the policy
    names (depth, joint velocity) are switched on. A stream the simulator cannot produce in
    the expected shape is a :class:`ConfigError` naming it.

    With ``safety`` the env takes joint targets, as the arm of ``mmrobot run`` does, and
    :func:`run_episode` puts the policy's end-effector actions through the controller and
    the safety layer; without, the env applies the end-effector actions itself.
    """
    from mmrobot.envs.sensors import OPTIONAL_STREAM_NAMES, SensorSuiteConfig
    from mmrobot.envs.tabletop import EnvConfig

    suite = SensorSuiteConfig()
    if specs:
        cams = [s for s in specs if s.modality in ("camera", "depth")]
        lidar = next((s for s in specs if s.name == "lidar"), None)
        kw: dict[str, Any] = {}
        if cams:
            kw["image_size"] = int(cams[0].shape[0])
        if lidar is not None:
            kw["lidar_rays"] = int(lidar.shape[0])
        suite = SensorSuiteConfig(**kw)
        for s in specs:
            if s.name in OPTIONAL_STREAM_NAMES:
                suite = suite.with_sensor(s.name, enabled=True)
        have = {s.name: s for s in suite.stream_specs()}
        problems = []
        for s in specs:
            sim = have.get(s.name)
            if sim is None:
                if not s.optional:
                    problems.append(f"{s.name!r}: the simulator has no such stream")
            elif sim.obs_shape != s.obs_shape or sim.dtype != s.dtype:
                problems.append(
                    f"{s.name!r}: policy expects {s.dtype} {s.obs_shape}, the simulator gives "
                    f"{sim.dtype} {sim.obs_shape}"
                )
        if problems:
            raise ConfigError(
                "the policy's observation spec does not match the simulated rig: "
                + "; ".join(problems)
                + f". Simulated streams: {sorted(have)} (see mmrobot.envs.default_stream_specs)"
            )
    return EnvConfig(
        sensors=suite,
        max_steps=max_steps,
        render_size=render_size,
        action_mode="joint" if safety else "ee_delta",
    )


def split_env_config(base: EnvConfig, split: str) -> EnvConfig:
    """``base`` adjusted for an evaluation split (phrasing set, or a modality removed;
    ``instruction_swap`` changes the episode, not the env: see :func:`run_episode`).

    Removing a modality sets ``dropout=1`` on every stream of that modality: the sim sensor
    delivers nothing, the buffer stays empty, the synchronizer marks the stream invalid.
    """
    if split not in SPLIT_NAMES:
        raise ConfigError(f"unknown split {split!r}; valid splits: {list(SPLIT_NAMES)}")
    if split == "heldout":
        return replace(base, instruction_split="heldout")
    cfg = replace(base, instruction_split="train")
    modality = MODALITY_SPLITS.get(split)
    if modality is None:
        return cfg
    suite = cfg.sensors
    removed = [s.name for s in suite.stream_specs() if s.modality == modality]
    if not removed:
        raise ConfigError(f"split {split!r}: the simulated rig has no {modality} stream")
    for name in removed:
        suite = suite.with_sensor(name, dropout=1.0)
    return replace(cfg, sensors=suite)


def make_eval_env(config: EnvConfig) -> Any:
    """A :class:`~mmrobot.envs.tabletop.TabletopEnv` that can render frames for videos."""
    from mmrobot.envs.tabletop import TabletopEnv

    return TabletopEnv(config, render_mode="rgb_array")


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation runs (see ``mmrobot eval --help`` for each flag).

    Attributes:
        episodes: episodes per task (or instructions-file line) per split.
        seed: episode k uses reset seed ``seed + k``.
        max_steps: episode length limit (default: each task's).
        splits: splits to run, a subset of :data:`SPLIT_NAMES`.
        tasks: task specs (default: every task with random parameters).
        replan_every: control ticks between policy calls.
        ensemble_decay: temporal ensembling decay (None: newest chunk only).
        workers: worker processes (0: run in this process).
        start_method: ``"spawn"`` or ``"forkserver"``.
        video_dir: write videos here (None: no videos).
        video_format: ``"mp4"`` or ``"gif"``.
        video_episodes: videos for the first this many episodes of each task and split.
        device: torch device of the policy in each worker.
        safety: run through ``mmrobot run``'s controller and safety layer (False: the env
            applies the end-effector actions itself, for comparison).
        safety_limits: the layer's limits (default: a launch file's defaults).
    """

    episodes: int = 10
    seed: int = 0
    max_steps: int | None = None
    splits: tuple[str, ...] = DEFAULT_SPLITS
    tasks: tuple[str, ...] | None = None
    replan_every: int = 1
    ensemble_decay: float | None = 0.1
    workers: int = 1
    start_method: str = "spawn"
    video_dir: str | None = None
    video_format: str = "mp4"
    video_episodes: int = 1
    device: str = "cpu"
    safety: bool = True
    safety_limits: SafetyConfig = SafetyConfig()

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if not self.splits:
            raise ConfigError(f"no splits given; valid splits: {list(SPLIT_NAMES)}")
        for s in self.splits:
            if s not in SPLIT_NAMES:
                raise ConfigError(f"unknown split {s!r}; valid splits: {list(SPLIT_NAMES)}")
        if len(set(self.splits)) != len(self.splits):
            raise ConfigError(f"splits listed twice: {list(self.splits)}")
        if self.replan_every < 1:
            raise ConfigError(f"replan_every must be >= 1, got {self.replan_every}")
        if self.ensemble_decay is not None and not (
            math.isfinite(self.ensemble_decay) and self.ensemble_decay >= 0
        ):
            raise ConfigError(f"ensemble_decay must be >= 0 or None, got {self.ensemble_decay}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.start_method not in ("spawn", "forkserver"):
            raise ConfigError(
                f"start_method must be 'spawn' or 'forkserver' (a GL context does not survive "
                f"fork), got {self.start_method!r}"
            )
        if self.video_format not in ("mp4", "gif"):
            raise ConfigError(f"video_format must be 'mp4' or 'gif', got {self.video_format!r}")
        if self.video_episodes < 0:
            raise ConfigError(f"video_episodes must be >= 0, got {self.video_episodes}")
