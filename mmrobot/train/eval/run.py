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

import multiprocessing as mp
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrobot.core.errors import ConfigError, MmrobotError
from mmrobot.core.types import StreamSpec
from mmrobot.policies.base import Policy

# Re-exported: the public evaluation API lives at this one import path.
from mmrobot.train.eval_episode import EpisodeResult, run_episode, swap_instruction_target
from mmrobot.train.eval_setup import (
    DEFAULT_SPLITS,
    EVAL_FORMAT_VERSION,
    INSTRUCTIONS_SPLIT,
    MODALITY_SPLITS,
    SPLIT_NAMES,
    SWAP_SPLIT,
    EvalSettings,
    InstructionLine,
    PolicySource,
    ScriptedExpertPolicy,
    all_task_specs,
    env_config_for_policy,
    expert_policy_factory,
    load_instructions,
    load_policy,
    make_eval_env,
    policy_stream_specs,
    split_env_config,
)
from mmrobot.train.eval_stats import EvalResult, SafetyStats, SuccessStats, wilson_interval

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

# --------------------------------------------------------------------------- jobs and workers


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
