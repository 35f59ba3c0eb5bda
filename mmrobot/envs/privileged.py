"""Privileged auxiliary targets: task facts the simulator knows, for training-only heads.

Behaviour cloning alone learns the average motion, not where the named block is. The
simulator knows the truth, so ``mmrobot collect`` records it per step, and training-only heads
learn to predict it from the fused tokens; deployment never needs it (the heads are not part
of ``act()`` or the ONNX graph). DAgger code labels the states the learner visits with
:func:`privileged_state` and :func:`~mmrobot.envs.experts.expert_plan`, from any state.

Targets (:data:`AUX_TARGETS`; all in the base frame, metres):

``block_rel`` (3,) float32
    the named block's centre minus the TCP position.
``goal_rel`` (3,) float32
    the task's goal (:func:`~mmrobot.envs.tasks.goal_position`) minus the TCP position:
    reach, the point 3 cm above the block; push, the zone's centre; pick, the lift point
    10 cm above the block's start position; place, the bin's centre (its floor); stack, the
    centre of the base block's top face.
``held`` () bool
    the gripper holds the named block (both finger pads touch it).
``phase`` () int64
    the scripted expert's phase in this state, an index into
    :data:`~mmrobot.envs.experts.PHASES`.
``block_yaw`` (2,) float32
    how far the tool must turn about the vertical to close square on the named block's
    faces, ``phi`` (:func:`~mmrobot.envs.experts.tool_yaw_to_block`, in [-45, 45) degrees),
    as ``(sin 4 phi, cos 4 phi)``: a square block looks the same every 90 degrees, so
    ``4 phi`` is the angle with no jump where the two turns to the nearest faces meet
    (``sin 4 phi`` has the sign of ``phi``, the direction the expert turns). The scripted
    expert turns the tool by ``phi`` before it grasps; a policy that cannot see which way
    the block is turned closes on it askew (docs/policy-trials.md).
``tcp`` (3,) float32
    the TCP position (base frame). ``block_rel + tcp`` is the block's position in the base
    frame, which a camera fixed to the base sees without knowing where the arm is (the
    camera heads of ``training.encoder_aux`` predict that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.core.errors import LifecycleError
from mmrobot.envs.experts import PHASES, expert_plan, phase_index, tool_yaw_to_block
from mmrobot.envs.tasks import goal_position, is_held

if TYPE_CHECKING:
    from mmrobot.envs.tabletop import TabletopEnv

__all__ = [
    "AUX_TARGETS",
    "PHASES",
    "PrivilegedState",
    "privileged_state",
    "stack_privileged",
    "turn_from_target",
    "yaw_target",
]

#: Auxiliary target name -> (per-step shape, dtype), as stored in datasets.
AUX_TARGETS: dict[str, tuple[tuple[int, ...], str]] = {
    "block_rel": ((3,), "float32"),
    "goal_rel": ((3,), "float32"),
    "held": ((), "bool"),
    "phase": ((), "int64"),
    "tcp": ((3,), "float32"),
    "block_yaw": ((2,), "float32"),
}


@dataclass(frozen=True)
class PrivilegedState:
    """The auxiliary targets of one state (see the module docstring).

    Attributes:
        block_rel: (3,) float32 block position minus TCP position, base frame, metres.
        goal_rel: (3,) float32 goal position minus TCP position, base frame, metres.
        held: whether the gripper holds the block.
        phase: index into :data:`~mmrobot.envs.experts.PHASES`.
        tcp: (3,) float32 TCP position, base frame, metres.
        block_yaw: (2,) float32 ``(sin 4 phi, cos 4 phi)`` of the tool's turn to the block's
            faces (see the module docstring).
    """

    block_rel: np.ndarray
    goal_rel: np.ndarray
    held: bool
    phase: int
    tcp: np.ndarray
    block_yaw: np.ndarray

    @property
    def phase_name(self) -> str:
        return PHASES[self.phase]

    def arrays(self) -> dict[str, np.ndarray]:
        """Target name -> array of the :data:`AUX_TARGETS` shape and dtype."""
        return {
            "block_rel": np.asarray(self.block_rel, dtype=np.float32),
            "goal_rel": np.asarray(self.goal_rel, dtype=np.float32),
            "held": np.asarray(self.held, dtype=bool),
            "phase": np.asarray(self.phase, dtype=np.int64),
            "tcp": np.asarray(self.tcp, dtype=np.float32),
            "block_yaw": np.asarray(self.block_yaw, dtype=np.float32),
        }


def privileged_state(env: TabletopEnv) -> PrivilegedState:
    """The auxiliary targets of ``env``'s current state.

    Call it where the observation is read (right after ``reset`` or ``step``): the value
    then describes the state that observation was taken in. It reads the simulator only and
    changes nothing.

    Args:
        env: a reset :class:`~mmrobot.envs.tabletop.TabletopEnv` (or a wrapper of one).

    Raises:
        LifecycleError: the environment was not reset.
    """
    env = env.unwrapped
    task = env.task
    if task is None:
        raise LifecycleError("privileged_state() needs env.reset() first")
    sc = env.scene
    tcp = sc.tcp_pose()[0]
    block = sc.block_pos(*task.block)
    goal = goal_position(sc, task, env.block_start_pos)
    return PrivilegedState(
        block_rel=(block - tcp).astype(np.float32),
        goal_rel=(goal - tcp).astype(np.float32),
        held=is_held(sc, task.block),
        # either expert turn: the phase does not depend on when the tool turns (away from
        # the block only the yaw differs; over it both turn before descending)
        phase=phase_index(expert_plan(env).phase),
        tcp=tcp.astype(np.float32),
        block_yaw=yaw_target(tool_yaw_to_block(sc, task.block)),
    )


def yaw_target(phi: float | np.ndarray) -> np.ndarray:
    """The ``block_yaw`` target of a tool turn ``phi`` (rad): ``(sin 4 phi, cos 4 phi)``;
    (2,) for one turn, (..., 2) for an array of them."""
    phi = np.asarray(phi, dtype=np.float64)
    return np.stack([np.sin(4.0 * phi), np.cos(4.0 * phi)], axis=-1).astype(np.float32)


def turn_from_target(target: np.ndarray) -> np.ndarray:
    """The tool turns phi (rad, in [-pi/4, pi/4]) of ``block_yaw`` targets or predictions
    (..., 2): the inverse of :func:`yaw_target` (a prediction need not be a unit vector)."""
    t = np.asarray(target, dtype=np.float64)
    return np.arctan2(t[..., 0], t[..., 1]) / 4.0


def stack_privileged(states: Sequence[PrivilegedState]) -> dict[str, np.ndarray]:
    """Per-step states -> target name -> (T, *shape) array (the dataset's ``aux`` group)."""
    rows = [s.arrays() for s in states]
    return {
        name: np.stack([r[name] for r in rows]) if rows else np.zeros((0, *shape), dtype=dtype)
        for name, (shape, dtype) in AUX_TARGETS.items()
    }
