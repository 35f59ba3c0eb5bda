"""DAgger rounds: the policy drives, the scripted expert labels every state it visits.

Behaviour cloning only sees the expert's own trajectories; a policy that is a little off
reaches states no demonstration shows, and its errors compound (Ross, Gordon & Bagnell, "A
reduction of imitation learning and structured prediction to no-regret online learning",
AISTATS 2011). DAgger rolls the current policy out, asks the expert what it would do in each
visited state, and trains on the union of all labelled data.

One round (:func:`collect_round`): episodes run in worker processes, each loading the
checkpoint once (one torch thread). At every tick the policy is asked for a chunk exactly as
in evaluation (temporal ensembling over the chunks that cover the tick); the executed action
is the expert's label with probability ``beta`` and the policy's otherwise (the mixture
policy of the paper). The expert's label, never the executed action, is what is recorded,
with the observation and the privileged auxiliary targets, into one HDF5 dataset of the
demonstration format (written to a temporary name, then renamed: a file that exists is
complete, so ``--resume`` can rely on it). Each step is flagged ``perturbed`` where the
executed action was not the label, as in perturbed demonstrations: the expert's labels of
the states after a step the policy drove are not the expert's plan from the state before,
so training keeps chunk position 0 (the state's own label) and drops the positions past it
(:func:`mmrobot.train.data.coherent_positions`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.envs.collect import Job, run_expert_episode
from mmrobot.envs.dataset import DatasetWriter, EpisodeRecord

__all__ = ["PolicyMixer", "collect_round"]

_WORKER: dict[str, Any] = {}


class PolicyMixer:
    """The executor of a DAgger episode: the expert's action with probability ``beta``,
    else the policy's (temporally ensembled, as :func:`mmrobot.train.eval.run_episode`
    runs it).

    Args:
        policy: the learner.
        beta: probability of executing the expert's label at a tick.
        rng: the episode's random generator (mixing draws).
        ensemble_decay: :class:`~mmrobot.deploy.loop.TemporalEnsembler` decay.
    """

    def __init__(
        self,
        policy: Any,
        beta: float,
        rng: np.random.Generator,
        ensemble_decay: float | None = 0.1,
    ) -> None:
        from mmrobot.deploy.loop import TemporalEnsembler

        self.policy, self.beta, self.rng = policy, beta, rng
        self.ensembler = TemporalEnsembler(ensemble_decay)

    def reset(self) -> None:
        self.policy.reset()
        self.ensembler.reset()

    def __call__(self, observation: Any, instruction: str, label: np.ndarray) -> np.ndarray:
        """The action to execute at this tick, given the expert's ``label`` (7,)."""
        chunk = self.policy.act(observation, instruction)
        if np.isfinite(chunk.actions).all():
            self.ensembler.add(chunk)
        if self.rng.random() < self.beta:
            return label
        action = self.ensembler.action_at(observation.t_ns)
        if action is None:  # nothing valid covers the tick: hold still, as the loop does
            action = np.zeros_like(label)
            action[-1] = label[-1]
        return np.asarray(action, dtype=np.float32)


def _worker_init(checkpoint: str, threads: int) -> None:
    import torch

    from mmrobot.policies import TorchPolicy
    from mmrobot.train.eval import env_config_for_policy

    torch.set_num_threads(threads)
    policy = TorchPolicy.from_checkpoint(checkpoint)
    from mmrobot.envs.tabletop import TabletopEnv

    cfg = env_config_for_policy(policy.config.streams, safety=False)
    _WORKER["policy"] = policy
    _WORKER["env"] = TabletopEnv(cfg, render_mode=None)


def _run(args: tuple[Job, float, int, str]) -> EpisodeRecord | str:
    job, beta, settle_steps, turn = args
    mixer = PolicyMixer(_WORKER["policy"], beta, np.random.default_rng([job.seed, 7]))
    mixer.reset()
    try:
        return run_expert_episode(
            _WORKER["env"],
            job,
            settle_steps=settle_steps,
            executor=mixer,
            flag_executed=True,
            expert_turn=turn,
        )
    except Exception as e:  # a crashed rollout must not end the round
        return f"{job.task} seed {job.seed}: {type(e).__name__}: {e}"


def collect_round(
    checkpoint: str | Path,
    out: str | Path,
    tasks: Sequence[str],
    seeds: Sequence[int],
    beta: float,
    workers: int = 2,
    settle_steps: int = 10,
    progress: bool = True,
    start_method: str = "spawn",
    expert_turn: str = "start",
) -> dict[str, Any]:
    """Roll ``checkpoint`` out for one DAgger round and write the expert-labelled episodes.

    Args:
        checkpoint: the policy checkpoint folder.
        out: the HDF5 dataset to write (replaced if it exists).
        tasks: task specs; episode k runs ``tasks[k % len(tasks)]`` with seed ``seeds[k]``.
        seeds: one reset seed per episode.
        beta: probability of executing the expert's label at a tick.
        workers: worker processes (0: this process).
        settle_steps: ticks recorded after a success (the expert holding at the goal).
        expert_turn: when the labelling expert turns the tool
            (:data:`~mmrobot.envs.experts.TURNS`; the demonstrations' expert).

    Returns:
        ``{"episodes", "steps", "success_rate", "errors", "seconds"}``;
        ``success_rate`` is the mixture's success over the round's episodes.
    """
    from mmrobot.envs.tabletop import ACTION_HIGH, ACTION_LOW

    t0 = time.perf_counter()
    out = Path(out)
    jobs = [
        (Job(tasks[k % len(tasks)], int(s)), beta, settle_steps, expert_turn)
        for k, s in enumerate(seeds)
    ]
    tmp = out.with_name(out.name + ".tmp")
    tmp.unlink(missing_ok=True)
    episodes, errors = [], []
    if workers == 0:
        _worker_init(str(checkpoint), threads=1)
        results = [_run(j) for j in jobs]
    else:
        ctx = mp.get_context(start_method)
        with ctx.Pool(workers, _worker_init, (str(checkpoint), 1)) as pool:
            results = list(_progress(pool.imap(_run, jobs, chunksize=1), len(jobs), progress))
    for r in results:
        (errors if isinstance(r, str) else episodes).append(r)
    if not episodes:
        raise RuntimeError(f"DAgger round: every rollout failed: {errors[:3]}")
    specs = tuple(s for s in _episode_specs(checkpoint) if s.name in episodes[0].values)
    with DatasetWriter(
        tmp, specs, ACTION_LOW, ACTION_HIGH, 20.0, overwrite=True, expert_turn=expert_turn
    ) as w:
        for ep in episodes:
            w.append(ep)
    os.replace(tmp, out)
    return {
        "episodes": len(episodes),
        "steps": int(sum(ep.n_steps for ep in episodes)),
        "success_rate": float(np.mean([ep.success for ep in episodes])),
        "errors": errors,
        "seconds": time.perf_counter() - t0,
    }


def _episode_specs(checkpoint: str | Path) -> tuple[Any, ...]:
    """The stream specs the rollout env records (the simulated rig matching the policy)."""
    from mmrobot.policies import read_checkpoint_config
    from mmrobot.train.eval import env_config_for_policy

    config, _ = read_checkpoint_config(checkpoint)
    return env_config_for_policy(config.streams, safety=False).sensors.stream_specs()


def _progress(items: Any, total: int, enabled: bool) -> Any:
    if not enabled:
        yield from items
        return
    from rich.progress import Progress

    with Progress() as p:
        task = p.add_task("DAgger rollouts", total=total)
        for it in items:
            p.advance(task)
            yield it
