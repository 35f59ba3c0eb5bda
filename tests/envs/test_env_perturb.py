"""Perturbed demonstrations (mmrobot.envs.perturb): excursions executed, the expert's labels
recorded, and the recovery states the plain demonstrations never show."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError
from mmrobot.envs.collect import Job, run_expert_episode
from mmrobot.envs.experts import PHASES
from mmrobot.envs.perturb import OffAxisGrasp, Perturbation, Perturber, episode_executor

LABEL = np.array([0.01, -0.02, 0.0, 0.05, 0.0, -0.05, 0.0], dtype=np.float32)


def test_an_excursion_moves_down_or_level_with_the_experts_gripper():
    p = Perturber(Perturbation(rate=1.0, steps=3, step_m=0.015), np.random.default_rng(0))
    actions = [p(None, "", LABEL) for _ in range(6)]  # type: ignore[arg-type]
    assert p.excursions == 2  # rate 1: a new one starts as soon as one ends
    for a in actions:
        assert np.linalg.norm(a[:3]) == pytest.approx(0.015, rel=1e-5)
        assert a[2] <= 0.0
        assert np.all(a[3:6] == 0.0)
        assert a[6] == LABEL[6]
    assert np.allclose(actions[0], actions[2]) and not np.allclose(actions[2], actions[3])


def test_rate_zero_executes_the_label():
    p = Perturber(Perturbation(rate=0.0), np.random.default_rng(0))
    assert all(p(None, "", LABEL) is LABEL for _ in range(50))  # type: ignore[arg-type]
    assert p.excursions == 0


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"rate": 1.5}, "rate must be in [0, 1]"),
        ({"step_m": 0.05}, "the env's step limit"),
        ({"steps": 0}, "steps must be >= 1"),
        ({"grasp_miss": -0.1}, "grasp_miss must be a share in [0, 1]"),
    ],
)
def test_bad_perturbation_is_a_config_error(kwargs, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("]", r"\]")):
        Perturbation(**kwargs)


def test_perturbed_demonstrations_hold_recovery_states(fast_env):
    """Plain reach demonstrations never show the expert's "rise" (up first, beside and below
    the target); perturbed ones do, labelled by the expert, and still succeed."""
    rise = PHASES.index("rise")

    def episodes(rate: float):
        out = []
        for seed in range(6):
            perturber = Perturber(Perturbation(rate=rate), np.random.default_rng(seed))
            labels, executed = [], []

            def executor(obs, text, label, perturber=perturber, labels=labels, executed=executed):
                labels.append(label)
                executed.append(perturber(obs, text, label))
                return executed[-1]

            ep = run_expert_episode(
                fast_env, Job("reach", seed), executor=executor, flag_executed=True
            )
            out.append((ep, perturber.excursions, np.array(labels), np.array(executed)))
        return out

    plain = episodes(0.0)
    perturbed = episodes(0.3)
    assert all(ep.success for ep, *_ in plain)
    assert not any((ep.aux["phase"] == rise).any() for ep, *_ in plain)
    assert sum(n for _, n, *_ in perturbed) >= 6
    assert sum(ep.success for ep, *_ in perturbed) >= 5
    assert any((ep.aux["phase"] == rise).any() for ep, *_ in perturbed)
    for ep, n, labels, executed in perturbed:  # recorded: the expert's labels, not what ran
        np.testing.assert_array_equal(ep.actions, labels[: len(ep.actions)])
        assert (np.abs(executed - labels).max(axis=1) > 0).any() == (n > 0)
        # and a flag on every step whose executed action was not its label
        differs = np.abs(executed - labels).max(axis=1) > 0
        np.testing.assert_array_equal(ep.perturbed, differs[: len(ep.actions)])
    assert all(ep.perturbed is not None and not ep.perturbed.any() for ep, *_ in plain)


def test_grasp_miss_forces_that_share_of_grasping_episodes(fast_env):
    """A ``grasp_miss`` share of the pick/place/stack episodes get an off-axis first grasp
    (1-3.5 cm either side); reach and push never do; the choice follows the episode's rng."""
    cfg = Perturbation(grasp_miss=0.25)
    chosen = [
        episode_executor(cfg, fast_env, "place", np.random.default_rng(s)) for s in range(400)
    ]
    forced = [e for e in chosen if e is not None]
    assert all(isinstance(e, OffAxisGrasp) for e in forced)
    assert 0.19 < len(forced) / 400 < 0.31  # binomial(400, 0.25): sd 2.2 points
    offsets = np.array([e.offset for e in forced])
    assert np.all((np.abs(offsets) >= 0.01) & (np.abs(offsets) <= 0.035))
    assert (offsets > 0).any() and (offsets < 0).any()
    for task in ("reach", "push"):
        assert (
            episode_executor(Perturbation(grasp_miss=1.0), fast_env, task, np.random.default_rng(0))
            is None
        )
    # grasp_miss with excursions: the episodes not forced get the random excursions
    mixed = Perturbation(rate=0.1, grasp_miss=1.0)
    assert isinstance(
        episode_executor(mixed, fast_env, "reach", np.random.default_rng(0)), Perturber
    )
    assert Perturbation(grasp_miss=0.5).enabled and not Perturbation().enabled


def test_forced_misses_are_recorded_with_the_experts_recovery(fast_env):
    """Episodes whose first grasp is forced 3 cm off along the fingers' axis: the descent is
    flagged, the labels are the expert's, and the expert still completes the task. (Seeds 0
    and 1 miss at 3 cm: a pad on the block's top; others hold, the small block's clearance
    being 2 cm.)"""
    for task, seed in (("pick", 0), ("place", 1)):
        grasp = OffAxisGrasp(fast_env, 0.03)
        ep = run_expert_episode(fast_env, Job(task, seed), executor=grasp, flag_executed=True)
        assert ep.success
        assert grasp.outcome is not None and not grasp.outcome["held"]  # a real miss
        assert ep.perturbed.sum() >= 6  # at least the forced closing's ticks
        first = int(np.argmax(ep.perturbed))
        assert ep.actions[first:, 6].max() == 1.0  # the expert reopens after the miss
