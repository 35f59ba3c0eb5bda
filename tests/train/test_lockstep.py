"""Episodes side by side with one batched policy call per round (``EvalSettings.lockstep``)."""

from __future__ import annotations

import numpy as np
import pytest
from train_testlib import tiny_specs

from mmrobot.envs.scene import choose_gl_backend

choose_gl_backend()  # before mujoco is first imported: headless EGL (or OSMesa) rendering

from mmrobot.core.types import ActionChunk, Observation  # noqa: E402
from mmrobot.policies.base import Policy  # noqa: E402
from mmrobot.train.eval import env_config_for_policy, evaluate, make_eval_env  # noqa: E402
from mmrobot.train.eval.episode import episode_steps, run_episode, run_lockstep  # noqa: E402

pytest.importorskip("mujoco")

PERIOD_NS = 50_000_000


class Steering(Policy):
    """Moves by a step that depends on what it sees (the measured joints), so two runs agree
    only if each episode got its own observations; counts its calls and batches."""

    def __init__(self) -> None:
        self.calls = self.batches = 0

    def act(self, observation: Observation, instruction: str) -> ActionChunk:
        self.calls += 1
        j = np.asarray(observation.values["joints"], np.float64)
        j = j[-1] if j.ndim == 2 else j
        a = np.zeros((4, 7), np.float32)
        a[:, 0] = 0.01 * np.sign(np.sin(10 * j[0]))
        a[:, 2] = -0.005 if "red" in instruction else 0.005
        a[:, 6] = 1.0
        return ActionChunk(observation.t_ns, a, PERIOD_NS)

    def act_batch(self, observations, instructions):
        self.batches += 1
        return super().act_batch(observations, instructions)


def _fields(r):
    return (r.task, r.instruction, r.seed, r.success, r.steps, r.policy_calls, r.safety_events)


def test_lockstep_episodes_are_the_episodes_one_at_a_time():
    cfg = env_config_for_policy(tiny_specs())
    envs = [make_eval_env(cfg) for _ in range(3)]
    try:
        kw = [dict(task=t, seed=s, max_steps=n) for t, s, n in
              (("reach", 0, 12), ("pick", 1, 7), ("push", 2, 10))]  # fmt: skip
        one = Steering()
        alone = [run_episode(envs[0], one, **k) for k in kw]
        both = Steering()
        together = run_lockstep([episode_steps(e, both, **k) for e, k in zip(envs, kw)], both)
        assert [_fields(r) for r in together] == [_fields(r) for r in alone]
        assert both.calls == one.calls == sum(r.policy_calls for r in alone)
        assert both.batches == 12  # one per round, as long as the longest episode
    finally:
        for e in envs:
            e.close()


def test_a_failed_episode_does_not_end_the_others():
    def broken():
        raise RuntimeError("this episode failed")
        yield  # a generator

    cfg = env_config_for_policy(tiny_specs())
    env = make_eval_env(cfg)
    try:
        policy = Steering()
        out = run_lockstep([broken(), episode_steps(env, policy, task="reach", seed=0,
                                                    max_steps=3)], policy)  # fmt: skip
        assert isinstance(out[0], RuntimeError) and out[1].steps == 3
    finally:
        env.close()


def test_the_torch_policy_batches_as_it_acts_alone(tiny_checkpoint):
    from mmrobot.policies import TorchPolicy

    policy = TorchPolicy.from_checkpoint(tiny_checkpoint)
    env = make_eval_env(env_config_for_policy(tiny_specs()))
    try:
        observations = []
        for seed in range(3):
            env.reset(seed=seed, options={"task": "reach"})
            observations.append(env.unwrapped.observation)
    finally:
        env.close()
    words = ["reach the red block", "go to the small blue cube", "move to the green block"]
    batched = policy.act_batch(observations, words)
    for obs, text, chunk in zip(observations, words, batched):
        alone = policy.act(obs, text)
        assert chunk.t_ns == obs.t_ns
        np.testing.assert_allclose(chunk.actions, alone.actions, atol=1e-6)
    with pytest.raises(ValueError, match="one instruction per observation"):
        policy.act_batch(observations, words[:2])


def test_evaluate_runs_lockstep_groups(tiny_checkpoint):
    common = dict(episodes=3, tasks=("reach", "pick"), splits=("train",), workers=0, max_steps=4)
    plain = evaluate(str(tiny_checkpoint), **common)
    grouped = evaluate(str(tiny_checkpoint), lockstep=2, **common)
    assert not grouped.errors and len(grouped.episodes) == 6
    key = sorted((e.task.split()[0], e.seed, e.instruction) for e in grouped.episodes)
    assert key == sorted((e.task.split()[0], e.seed, e.instruction) for e in plain.episodes)
    with pytest.raises(Exception, match="lockstep must be >= 1"):
        evaluate(str(tiny_checkpoint), lockstep=0, **common)
