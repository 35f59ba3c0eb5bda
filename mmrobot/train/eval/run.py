"""The entry points of an evaluation: :func:`evaluate` (check the settings and the policy,
plan the episodes, run them, collect an :class:`EvalResult`) and :func:`quick_success`, its
summary for a training run's metrics (see :mod:`mmrobot.train.eval`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import StreamSpec
from mmrobot.policies.base import Policy
from mmrobot.train.eval.envs import env_config_for_policy, split_env_config
from mmrobot.train.eval.episode import EpisodeResult
from mmrobot.train.eval.instructions import InstructionLine, load_instructions
from mmrobot.train.eval.policies import (
    PolicySource,
    expert_policy_factory,
    load_policy,
    policy_stream_specs,
)
from mmrobot.train.eval.pool import make_jobs, run_jobs
from mmrobot.train.eval.report import EvalProgress
from mmrobot.train.eval.results import EvalResult
from mmrobot.train.eval.settings import (
    DEFAULT_SPLITS,
    INSTRUCTIONS_SPLIT,
    MODALITY_SPLITS,
    RANDOMIZED_SPLIT,
    SWAP_SPLIT,
    EvalSettings,
)

if TYPE_CHECKING:
    from mmrobot.envs.tabletop import EnvConfig

__all__ = ["evaluate", "quick_success"]


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
                f"not apply (use {INSTRUCTIONS_SPLIT!r} and any of "
                f"{[RANDOMIZED_SPLIT, *MODALITY_SPLITS]})"
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

    jobs = make_jobs(settings, lines)
    result = EvalResult(description, settings, settings.splits, keys, lines=lines)
    t0 = time.perf_counter()
    with EvalProgress(len(jobs), enabled=progress is True) as bar:
        for ep in run_jobs(jobs, source, env_config, settings):
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
        if settings.explain:
            raise ConfigError(
                "explain needs a torch checkpoint; the scripted expert has no attention"
            )
        return "scripted expert", expert_policy_factory, None
    if isinstance(policy, (str, Path)):
        # load it here first: a bad path or file is a clear error before any worker starts
        loaded = load_policy(policy, settings.device if settings.workers == 0 else "cpu")
        if settings.explain and not loaded.explains:
            raise ConfigError(
                f"explain needs a torch checkpoint folder; {str(policy)!r} loads as "
                f"{type(loaded).__name__}, which has no attribution (an ONNX export does not "
                "carry it, see docs/evaluation.md)"
            )
        source = loaded if settings.workers == 0 else str(policy)
        return str(policy), source, policy_stream_specs(loaded)
    if isinstance(policy, Policy):
        if settings.explain and not policy.explains:
            raise ConfigError(
                f"explain needs a policy that explains its decisions (a torch checkpoint); "
                f"{type(policy).__name__} does not"
            )
        return type(policy).__name__, policy, policy_stream_specs(policy)
    if callable(policy):
        return getattr(policy, "__name__", type(policy).__name__), policy, None
    raise ConfigError(
        f"policy must be a path, 'expert', a Policy or an env -> Policy callable, got "
        f"{type(policy).__name__}"
    )
