"""Perturbed demonstrations: short random excursions that the scripted expert recovers from.

A demonstration shows only the expert's own path, so a policy that is a little off reaches
states no demonstration shows and does not know how to come back. Release v2 shows it
(``benchmarks/closed_loop_probe.py``): its policies descended beside the block, where the
expert's label is "rise" (up first, then across), and never rose: 0 cm per tick against the
expert's 2 cm, for 160 to 290 ticks of a place, stack or push episode. No demonstration is
ever low beside the block.

Here, as in DART (Laskey et al., CoRL 2017), what is executed is perturbed while the
expert's label is what is recorded. At each tick an excursion starts with probability
``rate``: for ``steps`` ticks the arm moves a fixed Cartesian step in a random direction,
pointing down or level (the direction the observed failures go), with the expert's gripper
command, so a held block stays held. The expert labels every state on the way out and
drives back afterwards, so the data holds the recovery the policy was missing. DAgger
labels the states the policy itself visits; this costs no policy, so it also works in the
first demonstrations.

A second kind is aimed at the learner's typical miss (docs/policy-trials.md "Why a miss misses"):
with ``grasp_miss``, that share of the grasping episodes (pick, place, stack) drive the
expert's first descent 1 to 3.5 cm off along the fingers' closing axis and close there
(:class:`OffAxisGrasp`); the expert labels the off-axis descent and then reopens and grasps
again (``benchmarks/grasp_recovery.py``: it completes 21 of 22 such misses).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Observation

__all__ = ["GRASP_TASKS", "OffAxisGrasp", "Perturbation", "Perturber", "episode_executor"]

#: The env's per-tick translation limit (``ACTION_HIGH`` of the tabletop env, metres).
_MAX_STEP_M = 0.02


@dataclass(frozen=True)
class Perturbation:
    """How demonstrations are perturbed (``rate = 0``: not at all).

    Attributes:
        rate: probability per tick that an excursion starts (when none is running).
        steps: ticks one excursion lasts.
        step_m: translation per tick of an excursion, metres (at most the env's 0.02).
        grasp_miss: share of the grasping episodes (pick, place, stack) whose first grasp is
            forced off along the fingers' axis (:class:`OffAxisGrasp`); those episodes have
            no random excursions.
    """

    rate: float = 0.0
    steps: int = 4
    step_m: float = 0.015
    grasp_miss: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigError(f"perturbation rate must be in [0, 1], got {self.rate}")
        if not 0.0 <= self.grasp_miss <= 1.0:
            raise ConfigError(
                f"perturbation grasp_miss must be a share in [0, 1], got {self.grasp_miss}"
            )
        if self.steps < 1:
            raise ConfigError(f"perturbation steps must be >= 1, got {self.steps}")
        if not 0.0 < self.step_m <= _MAX_STEP_M:
            raise ConfigError(
                f"perturbation step_m must be in (0, {_MAX_STEP_M}] m (the env's step limit), "
                f"got {self.step_m}"
            )

    @property
    def enabled(self) -> bool:
        return self.rate > 0.0 or self.grasp_miss > 0.0


class Perturber:
    """An executor for :func:`~mmrobot.envs.collect.run_expert_episode`: the expert's label,
    except during an excursion.

    Args:
        config: the perturbation.
        rng: its random numbers (seed it from the episode's seed for a reproducible dataset).
    """

    def __init__(self, config: Perturbation, rng: np.random.Generator) -> None:
        self.config, self.rng = config, rng
        self.left = 0  # ticks left in the running excursion
        self.direction = np.zeros(3)
        self.excursions = 0

    def __call__(self, observation: Observation, instruction: str, label: np.ndarray) -> np.ndarray:
        c = self.config
        if self.left == 0 and self.rng.random() < c.rate:
            d = self.rng.normal(size=3)
            d[2] = -abs(d[2])  # down or level, never up: the failures go down
            self.direction = d / max(float(np.linalg.norm(d)), 1e-9)
            self.left = c.steps
            self.excursions += 1
        if self.left == 0:
            return label
        self.left -= 1
        action = np.array(label, dtype=np.float32, copy=True)
        action[:3] = self.direction * c.step_m
        action[3:6] = 0.0  # no rotation; the gripper keeps the expert's command
        return action


_CLOSE_TICKS = 6  # ticks the forced closing lasts before the expert takes over
_DESCENT_TICKS = 12  # the forced descent closes after this many ticks even if still high
_CLOSE_DZ_M = 0.012  # within this of the grasp height it closes (the expert's own tolerance)


class OffAxisGrasp:
    """An executor for :func:`~mmrobot.envs.collect.run_expert_episode`: a learner's typical
    missed grasp. The expert's labels, except from its first ``descend`` on, where the arm
    descends ``offset`` m off along the fingers' closing axis and closes there (a pad comes
    down on the block's top, docs/policy-trials.md "Why a miss misses"); then the expert again.
    ``outcome`` says whether that closing held the block and how high it closed
    (``benchmarks/grasp_recovery.py``).

    Args:
        env: a :class:`~mmrobot.envs.tabletop.TabletopEnv` (or a wrapper of one).
        offset: metres along :func:`~mmrobot.envs.experts.finger_axis`.
    """

    def __init__(self, env, offset: float) -> None:
        self.env, self.offset = env.unwrapped, offset
        self.plan = None  # the expert's first descend plan, once seen
        self.ticks = self.closing = 0
        self.outcome: dict[str, float] | None = None  # set when the closing ends

    def __call__(self, observation: Observation, instruction: str, label: np.ndarray) -> np.ndarray:
        from mmrobot.envs.experts import expert_plan, finger_axis, grasp_point, plan_action
        from mmrobot.envs.tasks import is_held

        if self.outcome is not None:
            return label
        if self.plan is None:
            plan = expert_plan(self.env)
            if plan.phase != "descend":
                return label
            self.plan = plan
        sc, block = self.env.scene, self.env.task.block
        grasp = grasp_point(sc, block)
        target = grasp + self.offset * finger_axis(sc)
        dz = float(sc.tcp_pose()[0][2] - grasp[2])
        self.ticks += 1
        if self.closing or dz < _CLOSE_DZ_M or self.ticks > _DESCENT_TICKS:
            self.closing += 1
            if self.closing == _CLOSE_TICKS:
                self.outcome = {"held": bool(is_held(sc, block)), "dz_cm": 100 * dz}
            grip = 0.0
        else:
            grip = 1.0
        return plan_action(sc, replace(self.plan, target_m=target, grip=grip))


#: Tasks whose expert grasps a block (the ones :class:`OffAxisGrasp` applies to).
GRASP_TASKS = ("pick", "place", "stack")
#: Range of the forced offset along the fingers' axis, metres: from just under the large
#: block's 1.2 cm clearance (some of those still hold) to v11's farthest misses.
_MISS_OFFSET_M = (0.01, 0.035)


def episode_executor(
    config: Perturbation, env, task: str, rng: np.random.Generator
) -> Perturber | OffAxisGrasp | None:
    """The executor of one collected episode of ``task``: a forced off-axis first grasp (a
    ``grasp_miss`` share of the grasping episodes, offset uniform in 1-3.5 cm, either side),
    else random excursions (``rate > 0``), else None (the expert drives). ``rng`` is the
    episode's own stream, so the choice is reproducible."""
    grasps = config.grasp_miss > 0 and task.split()[0] in GRASP_TASKS
    if grasps and rng.random() < config.grasp_miss:
        offset = rng.uniform(*_MISS_OFFSET_M) * rng.choice((-1.0, 1.0))
        return OffAxisGrasp(env, float(offset))
    return Perturber(config, rng) if config.rate > 0 else None
