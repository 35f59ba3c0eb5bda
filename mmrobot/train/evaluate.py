"""Closed-loop evaluation of a policy in the MuJoCo tabletop simulation.

Each episode runs the policy exactly as the deployed control loop does
(:mod:`mmrobot.deploy.loop`): at every control tick the policy sees the
:class:`~mmrobot.core.Observation` that the env's :class:`~mmrobot.sync.Synchronizer` made
from the simulated drivers' :class:`~mmrobot.sync.StreamBuffer` s; a new action chunk is
requested every ``replan_every`` ticks (and whenever no chunk covers the current tick), and
the action for the tick is the :class:`~mmrobot.deploy.loop.TemporalEnsembler` combination
of every chunk that covers it. A chunk with a non-finite action is rejected (counted).

The action then takes ``mmrobot run``'s path to the arm (:class:`~mmrobot.deploy.safety.
SimSafety`, the same object :class:`~mmrobot.launch.sim.SimSession` uses): the Cartesian
controller turns it into joint targets, the :class:`~mmrobot.deploy.SafetyLayer` clamps
them to the limits (default: those of a launch file that does not change them,
:class:`~mmrobot.deploy.safety.SafetyConfig`) or holds, and the env applies the joint
targets. A tick that no accepted chunk covers holds. Every episode reports its safety events
per reason and its held ticks. With ``safety=False`` (``--no-safety``, for comparison) the
env applies the end-effector action itself and there is no layer.

Splits (the same seeds, hence the same initial layouts, in every split):

* ``train``: instructions generated from the training phrasings, all sensors on;
* ``heldout``: instructions from the held-out phrasings, all sensors on;
* ``instruction_swap``: the scene of the task's episode (same seed, same blocks in the same
  places), but the instruction (training phrasings) names another block on the table, and
  success is counted against that block: does the instruction, not habit, choose the block?
* ``no_camera``, ``no_lidar``, ``no_force``, ``no_joints``: training phrasings, and every
  stream of that modality configured to drop all its samples (``SensorConfig.dropout = 1``),
  so its buffer stays empty and the synchronizer marks it invalid, as with a dead sensor on
  a real rig (nothing edits observations);
* ``instructions`` (with a user's instructions file): the file's task and instruction per
  line, all sensors on.

Episode ``k`` (0-based) of every task and split is reset with seed ``seed + k``. Success is
the env's own detector (``info["is_success"]``). Rates come with a 95 % Wilson score interval
(:func:`wilson_interval`). Episodes run in worker processes (``spawn`` or ``forkserver``: a GL
context does not survive ``fork``); each worker builds its envs and loads the policy itself,
with ``torch.set_num_threads(1)``.
"""

from __future__ import annotations

import itertools
import json
import math
import multiprocessing as mp
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrobot.core.errors import ConfigError, DependencyNotInstalled, MmrobotError
from mmrobot.core.types import ActionChunk, Observation, StreamSpec
from mmrobot.deploy.safety import SafetyConfig
from mmrobot.policies.base import Policy

if TYPE_CHECKING:
    from mmrobot.deploy.safety import SimSafety
    from mmrobot.envs.tabletop import EnvConfig

__all__ = [
    "DEFAULT_SPLITS",
    "EVAL_FORMAT_VERSION",
    "INSTRUCTIONS_SPLIT",
    "MODALITY_SPLITS",
    "SPLIT_NAMES",
    "SWAP_SPLIT",
    "EpisodeResult",
    "EvalResult",
    "EvalSettings",
    "InstructionLine",
    "SafetyStats",
    "ScriptedExpertPolicy",
    "SuccessStats",
    "all_task_specs",
    "env_config_for_policy",
    "evaluate",
    "load_instructions",
    "load_policy",
    "make_eval_env",
    "quick_success",
    "run_episode",
    "split_env_config",
    "swap_instruction_target",
    "wilson_interval",
]

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


# --------------------------------------------------------------------------- statistics


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927).

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials; ``n = 0`` gives the uninformative ``(0, 1)``.
        z: standard normal quantile (1.96 for 95 %).

    Returns:
        (low, high) bounds in [0, 1].
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class SuccessStats:
    """Successes over episodes with the rate and its 95 % Wilson interval."""

    episodes: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else float("nan")

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.ci95
        return {
            "episodes": self.episodes,
            "successes": self.successes,
            "rate": None if self.episodes == 0 else self.rate,
            "ci95": [lo, hi],
        }

    def cell(self) -> str:
        """Short table text: ``7/10 70% [40-89]``."""
        if not self.episodes:
            return "-"
        lo, hi = self.ci95
        return f"{self.successes}/{self.episodes} {100 * self.rate:.0f}% [{100 * lo:.0f}-{100 * hi:.0f}]"


@dataclass(frozen=True)
class SafetyStats:
    """What the safety layer did over episodes: held ticks and events per reason."""

    episodes: int
    ticks: int
    held_ticks: int
    by_reason: dict[str, int]

    @property
    def events(self) -> int:
        return sum(self.by_reason.values())

    def to_dict(self) -> dict[str, Any]:
        n = max(self.episodes, 1)
        return {
            "episodes": self.episodes,
            "ticks": self.ticks,
            "events": self.events,
            "events_per_episode": self.events / n,
            "held_ticks": self.held_ticks,
            "held_ticks_per_episode": self.held_ticks / n,
            "held_fraction": self.held_ticks / self.ticks if self.ticks else 0.0,
            "by_reason": dict(self.by_reason),
        }

    def cell(self) -> str:
        """Short table text: ``12.5 ev, 0.5 held``."""
        if not self.episodes:
            return "-"
        n = self.episodes
        return f"{self.events / n:.1f} ev, {self.held_ticks / n:.1f} held"


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


# --------------------------------------------------------------------------- one episode


@dataclass(frozen=True)
class EpisodeResult:
    """What happened in one evaluation episode.

    Attributes:
        split: the evaluation split.
        key: the row it counts under (task spec as given, or task name for an
            instructions file).
        task: the resolved task spec of the episode (every parameter); in
            ``instruction_swap``, the instruction's task, which success is counted against.
        instruction: the instruction the policy was given.
        seed: the reset seed.
        success: the env's success detector fired.
        steps: control ticks run.
        reason: why it ended (``success``, ``time limit``, a physics blow-up, an error).
        policy_calls: chunks requested.
        rejected_chunks: chunks refused for non-finite actions.
        holds: ticks the arm held still: no valid action covered the tick, or the safety
            layer held (non-finite command, stale required stream).
        safety: whether the episode ran through the safety layer.
        safety_events: safety events per reason (``kind:where``, e.g. ``velocity_limit:j1``,
            ``workspace:z_low``, ``hold``), see :class:`~mmrobot.deploy.safety.SafetyEvent`.
        layout_task: ``instruction_swap`` only: the task the scene was laid out for.
        layout_task_success: ``instruction_swap`` only: whether that task (the block the
            instruction did not name) was accomplished instead: habit, not grounding.
        line: 1-based line of the instructions file, if any.
        error: the exception text when the episode crashed (counted as a failure).
        video: file written for this episode, if any.
    """

    split: str
    key: str
    task: str
    instruction: str
    seed: int
    success: bool
    steps: int
    reason: str
    policy_calls: int = 0
    rejected_chunks: int = 0
    holds: int = 0
    safety: bool = False
    safety_events: dict[str, int] = field(default_factory=dict)
    layout_task: str | None = None
    layout_task_success: bool | None = None
    line: int | None = None
    error: str | None = None
    video: str | None = None

    @property
    def n_safety_events(self) -> int:
        return sum(self.safety_events.values())


def swap_instruction_target(env: Any, seed: int | None, split: str = "train") -> tuple[str, str]:
    """Retarget a freshly reset episode to another block on the table (``instruction_swap``).

    The scene stays as reset (the task's layout); one of the other blocks on the table
    (drawn from ``seed``, never the task's block or a stack's base) becomes the task's block,
    the env's success detector follows it, and the instruction names it.

    Args:
        env: a :class:`~mmrobot.envs.tabletop.TabletopEnv` (or wrapper) just after ``reset``.
        seed: the episode's seed (the choice of block and phrasing is drawn from it).
        split: phrasing set of the instruction.

    Returns:
        (the instruction's complete task spec, the instruction).
    """
    from mmrobot.envs import names
    from mmrobot.envs.instructions import make_instruction
    from mmrobot.envs.tasks import TaskSpec

    base = env.unwrapped
    spec = base.task
    taken = {spec.block} | ({spec.base_block} if spec.task == "stack" else set())
    # parked blocks wait under the table (z < 0); the layout's blocks stand on it
    others = [
        (c, z)
        for c in names.COLORS
        for z in names.SIZES
        if (c, z) not in taken and base.scene.block_pos(c, z)[2] > 0.0
    ]
    if not others:
        raise ConfigError(
            f"{SWAP_SPLIT}: no other block on the table in this episode of {spec.format()!r} "
            f"(EnvConfig.n_distractors is {base.config.n_distractors}; it needs >= 1)"
        )
    rng = np.random.default_rng(None if seed is None else [int(seed), 0x5A4D])
    color, size = others[int(rng.integers(len(others)))]
    swapped = TaskSpec(spec.task, {**spec.params, "color": color, "size": size})
    text = make_instruction(swapped, rng, split)  # type: ignore[arg-type]
    # The env has no reset option for this (a target other than the layout's task): set the
    # task its success detector reads, the instruction its info reports, and the named
    # block's start position (the pick goal and the privileged targets are relative to it).
    base.task = swapped
    base.instruction = text
    if hasattr(base, "block_start_pos"):
        base.block_start_pos = base.scene.block_pos(color, size)
    return swapped.format(), text


def run_episode(
    env: Any,
    policy: Policy,
    *,
    task: str | None = None,
    instruction: str | None = None,
    seed: int | None = None,
    replan_every: int = 1,
    ensemble_decay: float | None = 0.1,
    max_steps: int | None = None,
    video: Any = None,
    on_step: Callable[[Observation, np.ndarray], None] | None = None,
    split: str = "",
    key: str = "",
    safety: SimSafety | SafetyConfig | None = None,
    swap_instruction: bool = False,
) -> EpisodeResult:
    """Run ``policy`` closed-loop for one episode of a tabletop env.

    The env's action mode chooses the path to the arm: an env that takes joint targets (the
    default of :func:`env_config_for_policy`) gets each action through ``mmrobot run``'s
    Cartesian controller and safety layer (:class:`~mmrobot.deploy.safety.SimSafety`); an
    ``ee_delta`` env applies the actions itself, with no safety layer.

    Args:
        env: a :class:`~mmrobot.envs.tabletop.TabletopEnv` (or a Gymnasium wrapper of one).
        policy: any :class:`Policy`; ``policy.reset()`` is called first.
        task: task spec text for ``reset`` (None: the env's default or a random task).
        instruction: the instruction (None: generated from the env's phrasing split).
        seed: reset seed.
        replan_every: request a new chunk every this many control ticks (>= 1).
        ensemble_decay: :class:`~mmrobot.deploy.loop.TemporalEnsembler` decay (None: newest
            chunk only).
        max_steps: stop after this many ticks (default: the env's own time limit).
        video: a :class:`~mmrobot.train.video.VideoRecorder`-like object with
            ``add(frame, step, status)`` fed ``env.render()`` frames, or None.
        on_step: called each tick with (the observation the policy saw, the (7,)
            end-effector action the tick executed; zero motion and the last gripper command
            on a tick that no action covers).
        split, key: copied into the result.
        safety: for a joint-target env, the path to reuse (a ``SimSafety`` of this env) or
            the limits to build one with (default: ``SafetyConfig()``); must be None for an
            ``ee_delta`` env.
        swap_instruction: reset with ``task``'s scene, then name another block on the table
            in the instruction and count success against it (:func:`swap_instruction_target`).

    Returns:
        The :class:`EpisodeResult` (``error`` is None; exceptions propagate).
    """
    from mmrobot.deploy.loop import TemporalEnsembler
    from mmrobot.deploy.safety import SimSafety

    if replan_every < 1:
        raise ConfigError(f"replan_every must be >= 1, got {replan_every}")
    if swap_instruction and instruction:
        raise ConfigError("swap_instruction makes the instruction; do not give one")
    base = env.unwrapped
    path: SimSafety | None = None
    if base.config.action_mode == "joint":
        path = safety if isinstance(safety, SimSafety) else SimSafety(env, safety)
    elif safety is not None:
        raise ConfigError(
            "the safety path needs an env that takes joint targets, as `mmrobot run`'s does: "
            "build it from env_config_for_policy(..., safety=True) or "
            "EnvConfig(action_mode='joint')"
        )
    options: dict[str, Any] = {}
    if task:
        options["task"] = task
    if instruction:
        options["instruction"] = instruction
    _, info = env.reset(seed=seed, options=options or None)
    text = str(info["instruction"])
    layout_task: str | None = None
    if swap_instruction:
        layout_task = str(info["task"])
        _, text = swap_instruction_target(env, seed)
    if video is not None:
        video.instruction = text
        video.add(env.render(), 0)
    policy.reset()
    ensembler = TemporalEnsembler(ensemble_decay)
    gripper = 1.0  # start open, as the env resets
    steps = calls = rejected = holds = 0
    success, reason = False, ""
    if path is not None:
        path.start(base.observation)
    while True:
        obs: Observation = base.observation
        action = ensembler.action_at(obs.t_ns)
        if steps % replan_every == 0 or action is None:
            chunk = policy.act(obs, text)
            calls += 1
            acts = np.asarray(chunk.actions)
            if acts.ndim != 2 or acts.shape[1] != _ACTION_DIM:
                raise ConfigError(
                    f"the policy returned actions of shape {acts.shape}; the tabletop env takes "
                    f"(H, {_ACTION_DIM}) actions [dx, dy, dz, droll, dpitch, dyaw, gripper]"
                )
            if np.isfinite(acts).all():
                ensembler.add(chunk)
            else:
                rejected += 1
                if path is not None:  # the loop records it too
                    path.layer.record(obs.t_ns, "rejected_chunk", "non-finite action in chunk")
            action = ensembler.action_at(obs.t_ns)
        # mmrobot run's path: controller, then the safety layer (which holds when no action
        # covers the tick); without it the env applies the action itself
        command = None if path is None else path.command(obs.t_ns, action, obs)
        if action is None:  # nothing valid covers this tick: no motion, last gripper command
            holds += path is None  # (the layer counts its own holds)
            action = np.zeros(_ACTION_DIM)
            action[-1] = gripper
        action = np.asarray(action, dtype=np.float32)
        gripper = float(action[-1])
        if on_step is not None:
            on_step(obs, action)
        _, _, terminated, truncated, info = env.step(action if command is None else command)
        steps += 1
        success = bool(info.get("is_success", False))
        if terminated or truncated or (max_steps is not None and steps >= max_steps):
            reason = "success" if success else str(info.get("truncated_reason", "time limit"))
            if video is not None:
                video.add(env.render(), steps, "success" if success else "fail")
            break
        if video is not None:
            video.add(env.render(), steps)
    layout_success: bool | None = None
    if layout_task is not None:
        from mmrobot.envs.tasks import TaskSpec, is_success

        layout_success = bool(is_success(base.scene, TaskSpec.parse(layout_task)))
    return EpisodeResult(
        split=split,
        key=key or str(info["task"]),
        task=str(info["task"]),
        instruction=text,
        seed=-1 if seed is None else int(seed),
        success=success,
        steps=steps,
        reason=reason,
        policy_calls=calls,
        rejected_chunks=rejected,
        holds=path.layer.n_holds if path is not None else holds,
        safety=path is not None,
        safety_events=path.layer.counts() if path is not None else {},
        layout_task=layout_task,
        layout_task_success=layout_success,
    )


# --------------------------------------------------------------------------- jobs and workers


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


@dataclass(frozen=True)
class _Job:
    split: str
    key: str
    task: str
    instruction: str | None
    seed: int
    index: int
    line: int | None = None
    video_path: str | None = None


_W: dict[str, Any] = {}  # per-process state: policy source, loaded policy, envs by split


def _setup(source: Any, base_cfg: EnvConfig, settings: EvalSettings, threads: bool) -> None:
    import mmrobot.envs  # noqa: F401 - picks a headless GL backend before mujoco is imported

    if threads:
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:  # an ONNX-only install: nothing to limit
            pass
    _W.clear()
    _W.update(source=source, base=base_cfg, settings=settings, envs={}, policies={}, paths={})
    if isinstance(source, (str, Path)):
        _W["policy"] = load_policy(source, settings.device)


def _policy_for(env: Any) -> Policy:
    if "policy" in _W:
        return _W["policy"]
    source = _W["source"]
    if isinstance(source, Policy):
        return source
    key = id(env)
    if key not in _W["policies"]:
        _W["policies"][key] = source(env)  # a factory env -> Policy
    return _W["policies"][key]


def _env_for(split: str) -> Any:
    envs = _W["envs"]
    if split not in envs:
        envs[split] = make_eval_env(split_env_config(_W["base"], split))
    return envs[split]


def _safety_for(split: str, env: Any) -> SimSafety | None:
    """The env's safety path, built once per env (None with the safety layer off)."""
    settings: EvalSettings = _W["settings"]
    if not settings.safety:
        return None
    paths = _W["paths"]
    if split not in paths:
        from mmrobot.deploy.safety import SimSafety

        paths[split] = SimSafety(env, settings.safety_limits)
    return paths[split]


def _run_job(job: _Job) -> EpisodeResult:
    settings: EvalSettings = _W["settings"]
    try:
        env = _env_for(job.split)
        policy = _policy_for(env)
        recorder = None
        if job.video_path is not None:
            from mmrobot.train.video import VideoRecorder

            fps = float(env.unwrapped.metadata.get("render_fps", 20))  # real time
            recorder = VideoRecorder(job.instruction or "", f"{job.split} | {job.key}", fps)
        res = run_episode(
            env,
            policy,
            task=job.task,
            instruction=job.instruction,
            seed=job.seed,
            replan_every=settings.replan_every,
            ensemble_decay=settings.ensemble_decay,
            max_steps=settings.max_steps,
            video=recorder,
            split=job.split,
            key=job.key,
            safety=_safety_for(job.split, env),
            swap_instruction=job.split == SWAP_SPLIT,
        )
        video = None
        if recorder is not None and job.video_path is not None:
            video = str(recorder.save(job.video_path))
        return replace(res, line=job.line, video=video)
    except Exception as e:  # one crashed episode must not end the run; it is reported
        return EpisodeResult(
            split=job.split,
            key=job.key,
            task=job.task,
            instruction=job.instruction or "",
            seed=job.seed,
            success=False,
            steps=0,
            reason="error",
            safety=settings.safety,
            line=job.line,
            error=f"{type(e).__name__}: {e}",
        )


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "task"


def _make_jobs(settings: EvalSettings, lines: Sequence[InstructionLine] | None) -> list[_Job]:
    jobs: list[_Job] = []
    vdir = Path(settings.video_dir) if settings.video_dir else None
    ext = settings.video_format
    for split in settings.splits:
        if lines is not None:
            for ln in lines:
                for k in range(settings.episodes):
                    video = None
                    if vdir is not None and k < settings.video_episodes:
                        video = str(vdir / split / f"line{ln.line:03d}_ep{k:03d}.{ext}")
                    key = ln.task.split()[0]
                    seed = settings.seed + k
                    jobs.append(_Job(split, key, ln.task, ln.instruction, seed, k, ln.line, video))
        else:
            for task in settings.tasks or ():
                for k in range(settings.episodes):
                    video = None
                    if vdir is not None and k < settings.video_episodes:
                        video = str(vdir / split / f"{_slug(task)}_ep{k:03d}.{ext}")
                    jobs.append(_Job(split, task, task, None, settings.seed + k, k, None, video))
    return jobs


def _pool_map(
    jobs: Sequence[_Job], source: Any, base: EnvConfig, settings: EvalSettings
) -> Iterator[EpisodeResult]:
    if settings.workers == 0:
        _setup(source, base, settings, threads=False)
        try:
            for job in jobs:
                yield _run_job(job)
        finally:
            for env in _W.get("envs", {}).values():
                env.close()
            _W.clear()
        return
    ctx = mp.get_context(settings.start_method)
    n = min(settings.workers, len(jobs))
    # ProcessPoolExecutor, not Pool: a worker that dies (or fails to load the policy) breaks
    # the pool with an error instead of hanging the run
    with ProcessPoolExecutor(
        n, mp_context=ctx, initializer=_setup, initargs=(source, base, settings, True)
    ) as pool:
        futures = [pool.submit(_run_job, job) for job in jobs]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BrokenProcessPool as e:
            raise MmrobotError(
                "an evaluation worker process died (crashed, killed, or failed to build its "
                f"env or load the policy: {e}); rerun with --workers 0 to see the error "
                "in this process"
            ) from e
        finally:
            for fut in futures:
                fut.cancel()


# --------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    """Episodes of an evaluation and their per-split, per-task success statistics.

    Attributes:
        policy: what was evaluated (path or description).
        settings: how.
        splits: splits in run order.
        keys: table rows in order (task specs, or task names for an instructions file).
        episodes: every episode's result.
        lines: the instructions file's lines, when one was used.
        seconds: wall time.
    """

    policy: str
    settings: EvalSettings
    splits: tuple[str, ...]
    keys: tuple[str, ...]
    episodes: list[EpisodeResult] = field(default_factory=list)
    lines: list[InstructionLine] | None = None
    seconds: float = 0.0

    def stats(self, split: str, key: str | None = None) -> SuccessStats:
        """Successes of one split, for one row (task) or all rows (``key=None``)."""
        eps = [e for e in self.episodes if e.split == split and (key is None or e.key == key)]
        return SuccessStats(len(eps), sum(e.success for e in eps))

    def line_stats(self, split: str, line: int) -> SuccessStats:
        eps = [e for e in self.episodes if e.split == split and e.line == line]
        return SuccessStats(len(eps), sum(e.success for e in eps))

    @property
    def errors(self) -> list[EpisodeResult]:
        return [e for e in self.episodes if e.error is not None]

    def safety_stats(self, split: str, key: str | None = None) -> SafetyStats:
        """Safety events and held ticks of one split, for one row or all rows."""
        eps = [e for e in self.episodes if e.split == split and (key is None or e.key == key)]
        by_reason: dict[str, int] = {}
        for e in eps:
            for reason, n in e.safety_events.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
        return SafetyStats(
            episodes=len(eps),
            ticks=sum(e.steps for e in eps),
            held_ticks=sum(e.holds for e in eps),
            by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        )

    def per_split(self) -> dict[str, dict[str, SuccessStats]]:
        """split -> row -> stats, with an ``"all"`` row per split."""
        return {
            s: {**{k: self.stats(s, k) for k in self.keys}, "all": self.stats(s)}
            for s in self.splits
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see ``docs/evaluation.md``)."""
        doc: dict[str, Any] = {
            "format_version": EVAL_FORMAT_VERSION,
            "policy": self.policy,
            "settings": asdict(self.settings),
            "splits": list(self.splits),
            "tasks": list(self.keys),
            "results": {
                s: {k: st.to_dict() for k, st in rows.items()}
                for s, rows in self.per_split().items()
            },
            "safety": {
                s: {
                    k: self.safety_stats(s, None if k == "all" else k).to_dict()
                    for k in (*self.keys, "all")
                }
                for s in self.splits
            },
            "errors": len(self.errors),
            "seconds": self.seconds,
        }
        if self.lines is not None:
            doc["lines"] = [
                {
                    "line": ln.line,
                    "task": ln.task,
                    "instruction": ln.instruction,
                    "split": s,
                    **self.line_stats(s, ln.line).to_dict(),
                }
                for s in self.splits
                for ln in self.lines
            ]
        doc["episodes"] = [asdict(e) for e in self._sorted_episodes()]
        return doc

    def _sorted_episodes(self) -> list[EpisodeResult]:
        split_i = {s: i for i, s in enumerate(self.splits)}
        key_i = {k: i for i, k in enumerate(self.keys)}
        return sorted(
            self.episodes,
            key=lambda e: (split_i.get(e.split, 99), key_i.get(e.key, 99), e.line or 0, e.seed),
        )

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    def tables(self) -> list[Any]:
        """Rich tables: success per task and split; per line for an instructions file."""
        from rich.table import Table

        t = Table(title="success rate (95% Wilson CI)", caption=f"policy: {self.policy}")
        t.add_column("task")
        for s in self.splits:
            t.add_column(s, justify="right")
        rows = self.per_split()
        for k in (*self.keys, "all"):
            t.add_row(k, *(rows[s][k].cell() for s in self.splits), end_section=k == self.keys[-1])
        out = [t]
        if self.lines is not None:
            lt = Table(title="instructions file, per line")
            lt.add_column("line", justify="right")
            lt.add_column("task")
            lt.add_column("instruction")
            for s in self.splits:
                lt.add_column(s, justify="right")
            for ln in self.lines:
                lt.add_row(
                    str(ln.line),
                    ln.task,
                    ln.instruction,
                    *(self.line_stats(s, ln.line).cell() for s in self.splits),
                )
            out.append(lt)
        out.extend(self._safety_tables())
        return out

    def _safety_tables(self) -> list[Any]:
        from rich.table import Table

        if not self.settings.safety:
            off = Table(title="safety layer off (--no-safety)")
            off.add_column("note")
            off.add_row("no limits were applied: these rates do not describe `mmrobot run`")
            return [off]
        t = Table(
            title="safety layer: events / held ticks per episode (mean)",
            caption="events: every clamp or hold, one per joint or axis and tick; held: ticks "
            "the arm held still",
        )
        t.add_column("task")
        for s in self.splits:
            t.add_column(s, justify="right")
        stats = {
            k: {s: self.safety_stats(s, None if k == "all" else k) for s in self.splits}
            for k in (*self.keys, "all")
        }
        for k, row in stats.items():
            t.add_row(k, *(row[s].cell() for s in self.splits), end_section=k == self.keys[-1])
        reasons = sorted(
            {r for s in self.splits for r in stats["all"][s].by_reason},
            key=lambda r: (-sum(stats["all"][s].by_reason.get(r, 0) for s in self.splits), r),
        )
        rt = Table(title="safety events by reason (total over episodes)")
        rt.add_column("reason")
        for s in self.splits:
            rt.add_column(s, justify="right")
        for r in reasons:
            rt.add_row(r, *(str(stats["all"][s].by_reason.get(r, 0)) for s in self.splits))
        if not reasons:
            rt.add_row("(none)", *("0" for _ in self.splits))
        return [t, rt]


# --------------------------------------------------------------------------- entry point


def evaluate(
    policy: PolicySource,
    settings: EvalSettings | None = None,
    *,
    instructions: str | Path | Sequence[InstructionLine] | None = None,
    env_config: EnvConfig | None = None,
    progress: bool | Callable[[EpisodeResult], None] = False,
    **overrides: Any,
) -> EvalResult:
    """Evaluate a policy closed-loop in simulation over tasks and splits.

    Args:
        policy: a torch checkpoint folder or ONNX model path (each worker loads it), the
            string ``"expert"`` (the scripted experts: a harness check), a :class:`Policy`
            object (only with ``workers=0``), or a picklable callable ``env -> Policy``.
        settings: see :class:`EvalSettings`; keyword ``overrides`` replace its fields
            (``evaluate(path, episodes=5, splits=("train",))``).
        instructions: a JSON Lines file (or its parsed lines) of ``{"task", "instruction"}``
            to evaluate instead of generated instructions; splits then default to
            ``("instructions",)`` and may add the ``no_*`` modality splits.
        env_config: the base env config (default: derived from the policy's stream specs).
        progress: True for a rich progress bar, or a callback called per finished episode.

    Returns:
        An :class:`EvalResult`.
    """
    from mmrobot.envs.tasks import TASKS, TaskSpec

    settings = settings or EvalSettings()
    lines: list[InstructionLine] | None = None
    if instructions is not None:
        lines = (
            load_instructions(instructions)
            if isinstance(instructions, (str, Path))
            else list(instructions)
        )
        if "splits" not in overrides and settings.splits == DEFAULT_SPLITS:
            overrides["splits"] = (INSTRUCTIONS_SPLIT,)
    if overrides:
        settings = replace(settings, **overrides)
    if lines is not None:
        bad = [s for s in settings.splits if s in ("train", "heldout", SWAP_SPLIT)]
        if bad:
            raise ConfigError(
                f"with an instructions file the phrasing comes from the file; splits {bad} do "
                f"not apply (use {INSTRUCTIONS_SPLIT!r} and any of {list(MODALITY_SPLITS)})"
            )
        keys = tuple(dict.fromkeys(ln.task.split()[0] for ln in lines))
    else:
        if INSTRUCTIONS_SPLIT in settings.splits:
            raise ConfigError(f"split {INSTRUCTIONS_SPLIT!r} needs an instructions file")
        tasks = settings.tasks or tuple(TASKS)
        for t in tasks:
            TaskSpec.parse(t)  # a clear error for an unknown task or value
        settings = replace(settings, tasks=tuple(tasks))
        keys = tuple(tasks)

    description, source, specs = _resolve_source(policy, settings)
    if isinstance(source, Policy) and settings.workers > 0:
        raise ConfigError(
            "a Policy object runs in this process only: pass workers=0, or a checkpoint path "
            "or a picklable env -> Policy factory for worker processes"
        )
    if env_config is None:
        env_config = env_config_for_policy(specs, settings.max_steps, safety=settings.safety)
    else:
        env_config = replace(
            env_config,
            max_steps=settings.max_steps or env_config.max_steps,
            action_mode="joint" if settings.safety else "ee_delta",
        )
    for s in settings.splits:
        split_env_config(env_config, s)  # fail before any worker starts

    jobs = _make_jobs(settings, lines)
    result = EvalResult(description, settings, settings.splits, keys, lines=lines)
    t0 = time.perf_counter()
    with _Progress(len(jobs), enabled=progress is True) as bar:
        for ep in _pool_map(jobs, source, env_config, settings):
            result.episodes.append(ep)
            bar.advance(ep)
            if callable(progress):
                progress(ep)
    result.seconds = time.perf_counter() - t0
    return result


def quick_success(
    policy: PolicySource,
    tasks: Sequence[str] | None = None,
    episodes_per_task: int = 2,
    seed: int = 0,
    workers: int = 1,
    splits: Sequence[str] = ("train",),
    **overrides: Any,
) -> dict[str, Any]:
    """A short closed-loop evaluation for use during training (every K steps).

    :func:`evaluate` on the same path as a full evaluation (safety layer on), without a
    progress bar, summarized for a metrics row. The same ``seed`` gives the same scenes each
    call, so successive checkpoints are compared on the same episodes.

    Args:
        policy: a checkpoint folder (the trainer's), an ONNX export, ``"expert"``, a
            :class:`Policy` (``workers=0`` only) or a picklable ``env -> Policy`` factory.
        tasks: task specs (default: every task, random blocks).
        episodes_per_task: episodes per task and split.
        seed: episode k is reset with seed ``seed + k``.
        workers: worker processes (0: this process).
        splits: evaluation splits.
        **overrides: other :class:`EvalSettings` fields (``max_steps``, ``safety``...).

    Returns:
        ``{"mean": success rate over every episode, "per_task": {task: rate over its
        episodes in all splits}, "per_split": {split: {"mean": rate, "per_task": {task:
        rate}}}, "episodes": n, "errors": crashed episodes (counted as failures),
        "seconds": wall time}``.
    """
    settings = EvalSettings(
        episodes=episodes_per_task,
        seed=seed,
        tasks=tuple(tasks) if tasks else None,
        splits=tuple(splits),
        workers=workers,
    )
    result = evaluate(policy, settings, **overrides)

    def rate(eps: list[EpisodeResult]) -> float:
        return sum(e.success for e in eps) / len(eps) if eps else float("nan")

    def by_task(eps: list[EpisodeResult]) -> dict[str, float]:
        return {k: rate([e for e in eps if e.key == k]) for k in result.keys}

    per_split = {}
    for split in result.splits:
        eps = [e for e in result.episodes if e.split == split]
        per_split[split] = {"mean": rate(eps), "per_task": by_task(eps)}
    return {
        "mean": rate(result.episodes),
        "per_task": by_task(result.episodes),
        "per_split": per_split,
        "episodes": len(result.episodes),
        "errors": len(result.errors),
        "seconds": result.seconds,
    }


def _resolve_source(
    policy: PolicySource, settings: EvalSettings
) -> tuple[str, Any, tuple[StreamSpec, ...] | None]:
    """(description, what workers get, the policy's stream specs or None)."""
    if isinstance(policy, str) and policy == "expert":
        return "scripted expert", expert_policy_factory, None
    if isinstance(policy, (str, Path)):
        # load it here first: a bad path or file is a clear error before any worker starts
        loaded = load_policy(policy, settings.device if settings.workers == 0 else "cpu")
        source = loaded if settings.workers == 0 else str(policy)
        return str(policy), source, policy_stream_specs(loaded)
    if isinstance(policy, Policy):
        return type(policy).__name__, policy, policy_stream_specs(policy)
    if callable(policy):
        return getattr(policy, "__name__", type(policy).__name__), policy, None
    raise ConfigError(
        f"policy must be a path, 'expert', a Policy or an env -> Policy callable, got "
        f"{type(policy).__name__}"
    )


class _Progress:
    """A rich progress bar on stderr (or nothing when disabled)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self._p: Any = None
        self._done = self._ok = 0
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._p = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self) -> _Progress:
        if self._p is not None:
            self._p.start()
            self._task = self._p.add_task("episodes", total=self.total)
        return self

    def advance(self, ep: EpisodeResult) -> None:
        self._done += 1
        self._ok += int(ep.success)
        if self._p is not None:
            self._p.update(self._task, advance=1, description=f"episodes ({self._ok} successes)")

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()


def iter_specs(values: Iterable[str]) -> list[str]:
    """Split comma-separated CLI values (``["a,b", "c"]`` -> ``[a, b, c]``), dropping blanks."""
    return [v.strip() for item in values for v in item.split(",") if v.strip()]
