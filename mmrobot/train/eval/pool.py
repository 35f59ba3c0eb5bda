"""The parallel runner: the episodes of an evaluation as jobs, run in worker processes
(``spawn`` or ``forkserver``: a GL context does not survive ``fork``) or in this one. Each
worker builds its envs and loads the policy itself, with ``torch.set_num_threads(1)``."""

from __future__ import annotations

import multiprocessing as mp
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrobot.core.errors import MmrobotError
from mmrobot.policies.base import Policy
from mmrobot.train.eval.envs import make_eval_env, split_env_config
from mmrobot.train.eval.episode import EpisodeResult, episode_steps, run_episode, run_lockstep
from mmrobot.train.eval.instructions import InstructionLine
from mmrobot.train.eval.policies import load_policy
from mmrobot.train.eval.settings import SWAP_SPLIT, EvalSettings

if TYPE_CHECKING:
    from mmrobot.deploy.safety import SimSafety
    from mmrobot.envs.tabletop import EnvConfig

__all__ = ["EpisodeJob", "make_jobs", "run_jobs"]


@dataclass(frozen=True)
class EpisodeJob:
    """One episode to run: its split, row, task, instruction (None: generated), reset seed,
    index within its task, instructions-file line and video file, if any."""

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


def _env_for(split: str, slot: int = 0) -> Any:
    """The worker's env of ``split`` for lockstep slot ``slot`` (built once)."""
    envs = _W["envs"]
    if (split, slot) not in envs:
        envs[split, slot] = make_eval_env(split_env_config(_W["base"], split))
    return envs[split, slot]


def _safety_for(env: Any) -> SimSafety | None:
    """The env's safety path, built once per env (None with the safety layer off)."""
    settings: EvalSettings = _W["settings"]
    if not settings.safety:
        return None
    paths = _W["paths"]
    if id(env) not in paths:
        from mmrobot.deploy.safety import SimSafety

        paths[id(env)] = SimSafety(env, settings.safety_limits)
    return paths[id(env)]


def _episode_args(job: EpisodeJob, env: Any, recorder: Any = None) -> dict[str, Any]:
    """:func:`run_episode`'s keyword arguments for ``job`` on ``env``."""
    settings: EvalSettings = _W["settings"]
    return dict(
        task=job.task,
        instruction=job.instruction,
        seed=job.seed,
        replan_every=settings.replan_every,
        ensemble_decay=settings.ensemble_decay,
        max_steps=settings.max_steps,
        video=recorder,
        split=job.split,
        key=job.key,
        safety=_safety_for(env),
        swap_instruction=job.split == SWAP_SPLIT,
        explain=settings.explain,
    )


def _failed(job: EpisodeJob, e: BaseException) -> EpisodeResult:
    """The result of an episode that raised: reported, not fatal to the run."""
    return EpisodeResult(
        split=job.split,
        key=job.key,
        task=job.task,
        instruction=job.instruction or "",
        seed=job.seed,
        success=False,
        steps=0,
        reason="error",
        safety=_W["settings"].safety,
        line=job.line,
        error=f"{type(e).__name__}: {e}",
    )


def _run_job(job: EpisodeJob) -> EpisodeResult:
    settings: EvalSettings = _W["settings"]
    try:
        env = _env_for(job.split)
        policy = _policy_for(env)
        recorder = None
        if job.video_path is not None:
            from mmrobot.train.video import VideoRecorder

            fps = float(env.unwrapped.metadata.get("render_fps", 20))  # real time
            recorder = VideoRecorder(
                job.instruction or "", f"{job.split} | {job.key}", fps, explain=settings.explain
            )
        res = run_episode(env, policy, **_episode_args(job, env, recorder))
        video = None
        if recorder is not None and job.video_path is not None:
            video = str(recorder.save(job.video_path))
        return replace(res, line=job.line, video=video)
    except Exception as e:  # one crashed episode must not end the run; it is reported
        return _failed(job, e)


def _run_group(jobs: Sequence[EpisodeJob]) -> list[EpisodeResult]:
    """``jobs`` side by side, each on an env of its own, one batched policy call per round
    (``EvalSettings.lockstep``; a policy loaded from a path, no videos)."""
    try:
        envs = [_env_for(job.split, slot) for slot, job in enumerate(jobs)]
        policy = _W["policy"]
        steps = [episode_steps(env, policy, **_episode_args(j, env)) for j, env in zip(jobs, envs)]
    except Exception as e:
        return [_failed(job, e) for job in jobs]
    return [
        _failed(job, r) if isinstance(r, Exception) else replace(r, line=job.line)
        for job, r in zip(jobs, run_lockstep(steps, policy))
    ]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "task"


def make_jobs(settings: EvalSettings, lines: Sequence[InstructionLine] | None) -> list[EpisodeJob]:
    """Every episode of the run, split by split: per task, or per instructions-file line."""
    jobs: list[EpisodeJob] = []
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
                    jobs.append(
                        EpisodeJob(split, key, ln.task, ln.instruction, seed, k, ln.line, video)
                    )
        else:
            for task in settings.tasks or ():
                for k in range(settings.episodes):
                    video = None
                    if vdir is not None and k < settings.video_episodes:
                        video = str(vdir / split / f"{_slug(task)}_ep{k:03d}.{ext}")
                    jobs.append(
                        EpisodeJob(split, task, task, None, settings.seed + k, k, None, video)
                    )
    return jobs


def run_jobs(
    jobs: Sequence[EpisodeJob], source: Any, base: EnvConfig, settings: EvalSettings
) -> Iterator[EpisodeResult]:
    """Run ``jobs`` (in worker processes, or here with ``workers=0``); results as they finish."""
    k = settings.lockstep
    if k > 1 and not isinstance(source, (str, Path)):
        k = 1  # a policy object or factory may keep per-episode state: one at a time
    if any(job.video_path for job in jobs) or settings.explain:
        k = 1
    groups = [list(jobs[i : i + k]) for i in range(0, len(jobs), k)]
    if settings.workers == 0:
        _setup(source, base, settings, threads=False)
        try:
            for group in groups:
                yield from _run_group(group) if k > 1 else [_run_job(group[0])]
        finally:
            for env in _W.get("envs", {}).values():
                env.close()
            _W.clear()
        return
    ctx = mp.get_context(settings.start_method)
    n = min(settings.workers, len(groups))
    # ProcessPoolExecutor, not Pool: a worker that dies (or fails to load the policy) breaks
    # the pool with an error instead of hanging the run
    with ProcessPoolExecutor(
        n, mp_context=ctx, initializer=_setup, initargs=(source, base, settings, True)
    ) as pool:
        futures = [
            pool.submit(_run_group, group) if k > 1 else pool.submit(_run_job, group[0])
            for group in groups
        ]
        try:
            for fut in as_completed(futures):
                done = fut.result()
                yield from done if isinstance(done, list) else [done]
        except BrokenProcessPool as e:
            raise MmrobotError(
                "an evaluation worker process died (crashed, killed, or failed to build its "
                f"env or load the policy: {e}); rerun with --workers 0 to see the error "
                "in this process"
            ) from e
        finally:
            for fut in futures:
                fut.cancel()
