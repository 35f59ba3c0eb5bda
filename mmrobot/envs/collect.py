"""Demonstration collection: scripted experts in parallel worker processes -> one HDF5 file.

Workers are started with the ``spawn`` (default) or ``forkserver`` context, never ``fork``:
a GL context does not survive a fork. Each worker builds its environment (and, lazily, its
renderers) on its first job and keeps it for the following ones.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Observation
from mmrobot.envs.dataset import DatasetWriter, EpisodeRecord
from mmrobot.envs.perturb import GRASP_TASKS, Perturbation, episode_executor
from mmrobot.envs.tasks import TaskSpec

__all__ = ["CollectConfig", "Executor", "Job", "collect", "expert_success", "run_expert_episode"]


@dataclass(frozen=True)
class Job:
    """One episode to run: task spec text, seed, instruction split."""

    task: str
    seed: int
    split: str = "train"


@dataclass(frozen=True)
class CollectConfig:
    """Settings of a collection run.

    Attributes:
        tasks: task specs (text) cycled over the episodes.
        episodes: successful episodes wanted (all episodes with ``keep_failed``).
        out: HDF5 output path.
        workers: worker processes (0: run in this process).
        seed: seed of the first episode; episode k uses ``seed + k``.
        keep_failed: store failed expert episodes too (marked ``success=False``).
        image_size: camera image side.
        split: instruction phrasing set.
        randomize: domain randomization on.
        max_attempts: stop after this many episodes even if too few succeeded
            (default ``2 * episodes + 10``).
        start_method: ``"spawn"`` or ``"forkserver"``.
        overwrite: replace an existing output file.
        settle_steps: steps recorded after the task succeeds, with the expert holding at the
            goal (so the data shows arriving and then staying, not only arriving).
        perturbation: random excursions, or forced off-axis first grasps, executed in place
            of the expert's action, which it then recovers from (:mod:`mmrobot.envs.perturb`);
            off by default.
        expert_turn: when the expert turns the tool to the block's faces
            (:data:`~mmrobot.envs.experts.TURNS`); recorded in the dataset, so DAgger rounds
            label with the same expert.
    """

    tasks: tuple[str, ...]
    episodes: int
    out: str
    workers: int = 1
    seed: int = 0
    keep_failed: bool = False
    image_size: int = 96
    split: str = "train"
    randomize: bool = False
    max_attempts: int | None = None
    start_method: str = "spawn"
    overwrite: bool = False
    settle_steps: int = 10
    perturbation: Perturbation = Perturbation()
    expert_turn: str = "start"

    def __post_init__(self) -> None:
        from mmrobot.envs.experts import check_turn

        check_turn(self.expert_turn)
        if not self.tasks:
            raise ConfigError("collect needs at least one task, e.g. --tasks pick place")
        for t in self.tasks:
            TaskSpec.parse(t)  # raises a clear error for an unknown task or value
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.settle_steps < 0:
            raise ConfigError(f"settle_steps must be >= 0, got {self.settle_steps}")
        if self.start_method not in ("spawn", "forkserver"):
            raise ConfigError(
                f"start_method must be 'spawn' or 'forkserver' (a GL context does not survive "
                f"fork), got {self.start_method!r}"
            )


# --------------------------------------------------------------------------- one episode

_WORKER_ENV: dict[str, Any] = {}


def _make_env(image_size: int, split: str, randomize: bool) -> Any:
    from mmrobot.envs.randomization import Randomization
    from mmrobot.envs.sensors import SensorSuiteConfig
    from mmrobot.envs.tabletop import EnvConfig, TabletopEnv

    cfg = EnvConfig(
        sensors=SensorSuiteConfig(image_size=image_size),
        instruction_split=split,  # type: ignore[arg-type]
        randomization=Randomization() if randomize else None,
    )
    return TabletopEnv(cfg, render_mode=None)


#: ``executor(observation, instruction, label) -> action``: what is executed at a tick
#: given the expert's label (7,), e.g. a DAgger mixture of the learner and the expert.
Executor = Callable[[Observation, str, np.ndarray], np.ndarray]


def run_expert_episode(
    env: Any,
    job: Job,
    record: bool = True,
    settle_steps: int = 0,
    executor: Executor | None = None,
    flag_executed: bool = False,
    expert_turn: str = "start",
) -> EpisodeRecord:
    """Run one episode of ``env`` (a TabletopEnv) labelled by the scripted expert.

    Each recorded step holds the observation, the privileged targets of the state it was
    taken in (:func:`~mmrobot.envs.privileged.privileged_state`) and the expert's action
    (its label). The expert drives, unless ``executor`` is given: then the action executed
    at each tick is ``executor(observation, instruction, label)`` (the expert labels any
    state, whoever drove there), and the label is still what is recorded; with
    ``flag_executed`` (perturbed demonstrations and DAgger rollouts), also a flag per step
    where the executed action differed (``perturbed``: training drops the chunk positions
    past it). After a success
    the episode goes on for ``settle_steps`` more recorded steps (the expert's label there
    is to hold at the goal); ``success`` stays what the env reported at the success.
    ``expert_turn`` says when the expert turns the tool (:data:`~mmrobot.envs.experts.TURNS`).

    A physics blow-up ends the episode (``success=False``, ``reason`` says why); it never
    raises out of here.
    """
    from mmrobot.envs.experts import ScriptedExpert
    from mmrobot.envs.privileged import privileged_state, stack_privileged

    env = env.unwrapped
    _, info = env.reset(seed=job.seed, options={"task": job.task})
    expert = ScriptedExpert(env, expert_turn)
    expert.reset()
    specs = env.stream_specs
    obs_list, acts, rews, times, priv, off = [], [], [], [], [], []
    success, reason = False, ""
    settle_left = -1  # counting down once the task succeeded
    while True:
        o = env.observation
        if record:
            priv.append(privileged_state(env))  # before acting: the state o was taken in
        a = expert.act()
        if record:
            obs_list.append(o)
            acts.append(a)
            times.append(o.t_ns)
        executed = a if executor is None else executor(o, env.instruction, a)
        if record and flag_executed:
            off.append(not np.array_equal(executed, a))
        _, r, term, trunc, info = env.step(executed)
        rews.append(r)
        if settle_left > 0:
            settle_left -= 1
            blowup = "blow-up" in str(info.get("truncated_reason", ""))
            if settle_left == 0 or blowup:
                if blowup:
                    success, reason = False, str(info["truncated_reason"])
                break
            continue
        if term or trunc:
            success = bool(info["is_success"])
            reason = str(info.get("truncated_reason", "success" if success else ""))
            if success and settle_steps > 0:
                settle_left = settle_steps
                continue
            break
    n = len(acts)
    values = {
        s.name: np.stack([o.values[s.name] for o in obs_list])
        if n
        else np.zeros((0, *s.obs_shape), s.dtype)
        for s in specs
    }
    ages = {s.name: np.array([o.ages_ns[s.name] for o in obs_list], dtype=np.int64) for s in specs}
    valid = {s.name: np.array([o.valid[s.name] for o in obs_list], dtype=bool) for s in specs}
    return EpisodeRecord(
        task=info["task"],
        instruction=info["instruction"],
        seed=job.seed,
        success=success,
        split=job.split,
        reason=reason,
        values=values,
        ages_ns=ages,
        valid=valid,
        actions=np.array(acts, dtype=np.float32).reshape(-1, 7),
        rewards=np.array(rews[:n] if record else rews, dtype=np.float32),
        t_ns=np.array(times, dtype=np.int64),
        aux=stack_privileged(priv) if record else {},
        settle_steps=max(0, settle_steps - max(settle_left, 0)) if success else 0,
        perturbed=np.array(off, dtype=bool) if flag_executed and record else None,
    )


# the turn meter's "away from the block": the TCP this far from it (x-y), beyond where the
# over_block expert turns by more than a tick's approach
_AWAY_M = 0.02


class _TurnMeter:
    """An executor that executes the expert's label and measures how it turns the tool to
    the named block's faces up to its first closing: the turn made while the TCP is
    ``_AWAY_M`` or more (x-y) from the block, and how far off square the tool closes
    (degrees; ``None`` when the episode never closes)."""

    def __init__(self, env: Any) -> None:
        self.env = env.unwrapped
        self.away: list[float] = []
        self.closing_off: float | None = None

    def __call__(self, observation: Observation, instruction: str, label: np.ndarray) -> np.ndarray:
        from mmrobot.envs.experts import tool_yaw_to_block

        if self.closing_off is None:
            sc, block = self.env.scene, self.env.task.block
            phi = float(np.degrees(tool_yaw_to_block(sc, block)))
            if label[6] < 0.5:
                self.closing_off = abs(phi)
            elif np.linalg.norm(sc.tcp_pose()[0][:2] - sc.block_pos(*block)[:2]) >= _AWAY_M:
                self.away.append(phi)
        return label

    @property
    def turned_away(self) -> float | None:
        return float(np.ptp(self.away)) if self.away and self.closing_off is not None else None


@dataclass(frozen=True)
class _WorkerJob:
    """One episode for a worker: the job, how to run it, and whether to record it (else a
    summary row comes back)."""

    job: Job
    image_size: int
    randomize: bool
    record: bool
    settle_steps: int
    perturbation: Perturbation
    turn: str


def _worker_run(
    w: _WorkerJob,
) -> EpisodeRecord | tuple[str, int, bool, int, str, float | None, float | None]:
    job, record, perturbation = w.job, w.record, w.perturbation
    key = f"{w.image_size}/{job.split}/{w.randomize}"
    env = _WORKER_ENV.get(key)
    if env is None:
        env = _WORKER_ENV[key] = _make_env(w.image_size, job.split, w.randomize)
    executor: Any = None
    if perturbation.enabled:  # its own stream, from the episode's seed: reproducible
        rng = np.random.default_rng([job.seed, 0x9E7])
        executor = episode_executor(perturbation, env, job.task, rng)
    elif not record and job.task.split()[0] in GRASP_TASKS:
        executor = _TurnMeter(env)
    try:
        ep = run_expert_episode(
            env,
            job,
            record=record,
            settle_steps=w.settle_steps,
            executor=executor,
            flag_executed=perturbation.enabled,  # every episode flagged: one dataset layout
            expert_turn=w.turn,
        )
    except Exception as e:  # a crashed episode must not end the collection run
        return (job.task, job.seed, False, 0, f"error: {type(e).__name__}: {e}", None, None)
    if record:
        return ep
    meter = executor if isinstance(executor, _TurnMeter) else None
    turn_deg = (meter.turned_away, meter.closing_off) if meter else (None, None)
    return (ep.task, ep.seed, ep.success, len(ep.rewards), ep.reason, *turn_deg)


def _jobs(tasks: Sequence[str], seed: int, split: str) -> Iterator[Job]:
    k = 0
    while True:
        yield Job(tasks[k % len(tasks)], seed + k, split)
        k += 1


def _map(
    fn: Callable[[Any], Any], items: Iterator[Any], workers: int, start_method: str
) -> Iterator[Any]:
    """Parallel map in job order (so a dataset's content depends only on its seeds)."""
    if workers == 0:
        for it in items:
            yield fn(it)
        return
    ctx = mp.get_context(start_method)
    with ctx.Pool(workers) as pool:
        yield from pool.imap(fn, items, chunksize=1)


def collect(cfg: CollectConfig, progress: bool = True) -> dict[str, Any]:
    """Run the experts and write the successful episodes to ``cfg.out``.

    Returns:
        A summary: episodes written, attempts, successes per task, seconds.
    """
    from mmrobot.envs.sensors import SensorSuiteConfig
    from mmrobot.envs.tabletop import ACTION_HIGH, ACTION_LOW, EnvConfig

    specs = SensorSuiteConfig(image_size=cfg.image_size).stream_specs()
    limit = cfg.max_attempts or 2 * cfg.episodes + 10
    t0 = time.perf_counter()
    per_task: dict[str, list[int]] = {}
    attempts = written = 0
    stream = _jobs(cfg.tasks, cfg.seed, cfg.split)
    items = (
        _WorkerJob(
            next(stream),
            cfg.image_size,
            cfg.randomize,
            True,
            cfg.settle_steps,
            cfg.perturbation,
            cfg.expert_turn,
        )
        for _ in range(limit)
    )
    bar = _Progress(cfg.episodes, enabled=progress)
    with (
        DatasetWriter(
            cfg.out,
            specs,
            ACTION_LOW,
            ACTION_HIGH,
            EnvConfig().control_hz,
            overwrite=cfg.overwrite,
            expert_turn=cfg.expert_turn,
        ) as w,
        bar,
    ):
        for ep in _map(_worker_run, items, cfg.workers, cfg.start_method):
            attempts += 1
            if isinstance(ep, tuple):  # the worker caught an error
                task, ok = ep[0], False
            else:
                task, ok = ep.task, ep.success
                if (ok or cfg.keep_failed) and written < cfg.episodes:
                    w.append(ep)
                    written += 1
                    bar.advance()
            c = per_task.setdefault(task.split()[0], [0, 0])
            c[0] += 1
            c[1] += int(ok)
            if written >= cfg.episodes:
                break
    return {
        "out": str(cfg.out),
        "episodes": written,
        "attempts": attempts,
        "per_task": per_task,
        "seconds": time.perf_counter() - t0,
        "episodes_per_min": 60.0 * attempts / max(1e-9, time.perf_counter() - t0),
    }


def expert_success(
    tasks: Sequence[str],
    seeds: int,
    workers: int = 1,
    seed: int = 0,
    progress: bool = True,
    start_method: str = "spawn",
    randomize: bool = False,
    perturbation: Perturbation | None = None,
    expert_turn: str = "start",
) -> dict[str, dict[str, Any]]:
    """Success rate of the scripted expert per task over ``seeds`` seeded episodes each
    (with ``perturbation``: while it recovers from random excursions; ``expert_turn``: when
    it turns the tool, :data:`~mmrobot.envs.experts.TURNS`).

    Returns:
        task -> {"episodes", "success", "rate", "mean_steps", "blowups", "turned_away_deg",
        "closing_off_deg"}. The last two, for the grasping tasks without ``perturbation``
        (else ``None``), are medians over the episodes: how far the expert turns the tool to
        the block's faces while 2 cm or more away from it (x-y), and how far off square it
        closes the gripper (degrees).
    """
    from mmrobot.envs.experts import check_turn

    check_turn(expert_turn)  # here, not in the workers: they report errors as failed episodes
    perturbation = perturbation or Perturbation()
    items = [
        _WorkerJob(Job(t, seed + k), 96, randomize, False, 0, perturbation, expert_turn)
        for t in tasks
        for k in range(seeds)
    ]
    out: dict[str, dict[str, Any]] = {
        t.split()[0]: {"episodes": 0, "success": 0, "steps": 0, "blowups": 0} for t in tasks
    }
    turns: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in out}
    bar = _Progress(len(items), enabled=progress)
    with bar:
        for task, _, ok, steps, reason, away, off in _map(
            _worker_run, iter(items), workers, start_method
        ):
            name = task.split()[0]
            r = out[name]
            r["episodes"] += 1
            r["success"] += int(ok)
            r["steps"] += steps
            r["blowups"] += int("blow-up" in reason or reason.startswith("error"))
            if away is not None and off is not None:
                turns[name][0].append(away)
                turns[name][1].append(off)
            bar.advance()
    for name, r in out.items():
        n = max(1, r["episodes"])
        r["rate"] = r["success"] / n
        r["mean_steps"] = r.pop("steps") / n
        away, off = turns[name]
        r["turned_away_deg"] = float(np.median(away)) if away else None
        r["closing_off_deg"] = float(np.median(off)) if off else None
    return out


class _Progress:
    """A rich progress bar (or nothing when disabled or rich is missing)."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.total = total
        self._p: Any = None
        if enabled:
            try:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TimeRemainingColumn,
                )

                self._p = Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeRemainingColumn(),
                )
            except ImportError:
                self._p = None

    def __enter__(self) -> _Progress:
        if self._p is not None:
            self._p.start()
            self._task = self._p.add_task("episodes", total=self.total)
        return self

    def advance(self) -> None:
        if self._p is not None:
            self._p.advance(self._task)

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()


_ = os
