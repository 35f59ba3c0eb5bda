"""Scripted experts: solve each task on the policy's own action space, from any state.

An expert reads the true scene state (privileged, like a human teleoperator who sees the
table) and emits the same 7-D action a policy does: an end-effector delta pose and a gripper
command. The environment's Cartesian controller turns it into joint targets with Jacobian
(damped least squares) inverse kinematics.

The expert keeps no memory between calls. Each call derives the task phase from the scene
alone (:func:`expert_plan`): whether the block is held, where the tool centre point (TCP) is
relative to the block and the goal, how far the gripper is open, how fast the fingers move.
So it labels any state, whoever drove there (DAgger: the learner drives, the expert labels
the states it visits), and the label is a pure function of the environment's state: the
physics state, the Cartesian controller's target pose, the task and the block's start
position (``env.block_start_pos``). Tracking is relative to the controller's target, so the
servo lag is not integrated into the command, unless that target is stale (further than
``_STALE_M`` / ``_STALE_RAD`` from the measured pose, e.g. after joint-mode commands): then it
is relative to the measured TCP pose.

Phases (:data:`PHASES`; the index of a phase is the ``phase`` auxiliary target):

============  ==================================================================
``reach``     reach: move to the point above the block
``rise``      move straight up before moving sideways: a few cm beside the block, only
              over the nearby blocks' tops (then ``above`` corrects sideways); further off,
              to the approach height
``above``     pick/place/stack: move over the block, gripper open, aligned to it
``descend``   lower the open gripper around the block
``close``     close the gripper on the block (until the fingers stop)
``lift``      lift the held block straight up
``carry``     carry it at a safe height over the destination
``lower``     lower it onto the destination
``release``   open the gripper
``retreat``   move up, away from the released block
``hover``     push: move above the start of the push line, gripper closed
``approach``  push: lower the gripper behind the block
``push``      push the block along the line to the zone centre
``hold``      at the goal: hold still
============  ==================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.envs import names
from mmrobot.envs.scene import HOME_TCP_MAT, mat_to_rotvec
from mmrobot.envs.tasks import PICK_LIFT_M, is_held, reach_target

if TYPE_CHECKING:
    from mmrobot.envs.scene import Scene
    from mmrobot.envs.tabletop import TabletopEnv
    from mmrobot.envs.tasks import TaskSpec

__all__ = [
    "PHASES",
    "ExpertPlan",
    "TURNS",
    "TURN_OVER_M",
    "ScriptedExpert",
    "check_turn",
    "expert_plan",
    "grasp_point",
    "phase_index",
    "plan_action",
    "reference_pose",
    "tool_yaw_to_block",
]

#: The expert's phases, in a fixed order (the ``phase`` auxiliary target is the index).
PHASES: tuple[str, ...] = (
    "reach",
    "rise",
    "above",
    "descend",
    "close",
    "lift",
    "carry",
    "lower",
    "release",
    "retreat",
    "hover",
    "approach",
    "push",
    "hold",
)
_PHASE_INDEX = {p: i for i, p in enumerate(PHASES)}

_MAX_STEP_M = 0.02
_MAX_ROT_RAD = 0.1
_OPEN, _CLOSED = 1.0, 0.0
# the controller's target is stale (use the measured pose) beyond these
_STALE_M = 0.035
_STALE_RAD = 0.25
_HOLD_TOL_M = 0.01  # within this of the final point: "hold"
_YAW_LIMIT_RAD = 1.9  # wanted tool yaws stay within this (the tool roll has +-2.97 rad)
_CARRY_Z_M = 0.2
_ABOVE_DZ_M = 0.09  # "above": this high over the block's top face
# low beside the block by less than this: correct sideways _CLEAR_DZ_M over the tops near it
_SIDEWAYS_M = 0.05
_CLEAR_DZ_M = 0.03
_GRASP_DZ_M = 0.002
_RETREAT_DZ_M = 0.06
_GRIP_SETTLED_M_S = 0.01  # finger speed below which a closing grip has settled
_ARM_SETTLED_RAD_S = 0.15  # arm joint speed (norm) below which the block may be released
_PUSH_Z_M = 0.022
#: When the expert turns the tool to the block's faces (pick, place, stack, reach):
#: ``"start"`` from the first tick, wherever the block is (the default; releases v1-v15);
#: ``"over_block"`` only once the TCP is within ``TURN_OVER_M`` (x-y) of the block, where the
#: wrist camera shows its edges (a policy trained on ``"start"`` demonstrations closes as if
#: it never turned; trained from scratch on ``"over_block"`` it scored 101 of 200 against
#: 124: docs/policy-trials.md, trial v16); ``"descending"`` turns where ``"over_block"`` does but
#: descends toward the block's top face while it turns, rather than pausing at the approach
#: height until square (the pause was where v16's policy closed high).
TURNS: tuple[str, ...] = ("start", "over_block", "descending")
TURN_OVER_M = 0.015  # m
# the block this close to the zone centre (2 cm inside the zone): done, hold
_PUSH_DONE_M = names.ZONE_RADIUS_M - 0.02
_HOVER_Z_M = 0.1


def phase_index(phase: str) -> int:
    """Index of ``phase`` in :data:`PHASES`."""
    try:
        return _PHASE_INDEX[phase]
    except KeyError:
        raise ConfigError(f"unknown expert phase {phase!r}; phases: {list(PHASES)}") from None


@dataclass(frozen=True)
class ExpertPlan:
    """What the expert wants in the current state.

    Attributes:
        phase: one of :data:`PHASES`.
        target_m: (3,) where the TCP should go, base frame.
        grip: gripper command, 0 closed .. 1 open.
        yaw_rad: wanted tool yaw about the base z axis (tool pointing down); None keeps the
            current yaw (and levels the tool).
        gain: proportional gain of the position tracking.
        max_step_m: largest position step per tick (per axis).
    """

    phase: str
    target_m: np.ndarray
    grip: float
    yaw_rad: float | None = None
    gain: float = 1.0
    max_step_m: float = _MAX_STEP_M


def _rz(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _tool_yaw(mat: np.ndarray) -> float:
    """Yaw of a TCP rotation relative to the home orientation (tool down)."""
    r = mat @ HOME_TCP_MAT.T
    return float(np.arctan2(r[1, 0], r[0, 0]))


def _block_yaw(mat: np.ndarray) -> float:
    return float(np.arctan2(mat[1, 0], mat[0, 0]))


def _wrap(angle: float, period: float) -> float:
    """``angle`` folded into [-period/2, period/2)."""
    return (angle + period / 2) % period - period / 2


def _nearest_yaw(yaw: float, period: float, current: float) -> float:
    """Among ``yaw + k * period`` (symmetry of the grip) within the yaw limit, the one
    nearest the current tool yaw."""
    base = _wrap(yaw, period)
    cands = [base + k * period for k in range(-4, 5) if abs(base + k * period) <= _YAW_LIMIT_RAD]
    return min(cands, key=lambda c: abs(c - current)) if cands else base


def reference_pose(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The pose the expert's deltas are relative to: the controller's target pose, or the
    measured TCP pose where that target is stale."""
    cmd_p, cmd_r = scene.commanded_pose()
    p, r = scene.tcp_pose()
    off_rad = float(np.linalg.norm(mat_to_rotvec(cmd_r @ r.T)))
    if np.linalg.norm(cmd_p - p) > _STALE_M or off_rad > _STALE_RAD:
        return p, r
    return cmd_p, cmd_r


def plan_action(scene: Scene, plan: ExpertPlan) -> np.ndarray:
    """The (7,) float32 ``ee_delta`` action that tracks ``plan`` from the current state."""
    ref_p, ref_r = reference_pose(scene)
    dp = np.clip(plan.gain * (plan.target_m - ref_p), -plan.max_step_m, plan.max_step_m)
    yaw = plan.yaw_rad if plan.yaw_rad is not None else _tool_yaw(scene.tcp_pose()[1])
    want = _rz(yaw) @ HOME_TCP_MAT
    dr = np.clip(mat_to_rotvec(want @ ref_r.T), -_MAX_ROT_RAD, _MAX_ROT_RAD)
    return np.concatenate([dp, dr, [plan.grip]]).astype(np.float32)


def check_turn(turn: str) -> str:
    """``turn`` if it is one of :data:`TURNS`, else a :class:`ConfigError` naming them."""
    if turn not in TURNS:
        raise ConfigError(f"expert turn must be one of {list(TURNS)}, got {turn!r}")
    return turn


def expert_plan(env: TabletopEnv, turn: str = "start") -> ExpertPlan:
    """The expert's plan in ``env``'s current state: a pure function of that state.

    Args:
        env: a reset :class:`~mmrobot.envs.tabletop.TabletopEnv` (or a wrapper of one).
        turn: when the tool turns to the block's faces (:data:`TURNS`).

    Raises:
        LifecycleError: the environment was not reset.
        ConfigError: an unknown ``turn``.
    """
    check_turn(turn)
    env = env.unwrapped
    task = env.task
    if task is None:
        raise LifecycleError("the scripted expert needs env.reset() first")
    sc = env.scene
    if task.task == "reach":
        return _plan_reach(sc, task, turn)
    if task.task == "push":
        return _plan_push(sc, task)
    return _plan_pick_and(sc, task, np.asarray(env.block_start_pos), turn)


def _grasp_yaw(sc: Scene, block: tuple[str, str], current: float, turn: str) -> float:
    """The tool yaw to grasp ``block`` with: its faces' yaw nearest ``current``; with turn
    ``"over_block"`` or ``"descending"``, ``current`` until the TCP is over the block."""
    if turn != "start":
        xy_err = np.linalg.norm(sc.tcp_pose()[0][:2] - sc.block_pos(*block)[:2])
        if xy_err >= TURN_OVER_M:
            return current
    return _nearest_yaw(_block_yaw(sc.block_mat(*block)), np.pi / 2, current)


def grasp_point(sc: Scene, block: tuple[str, str]) -> np.ndarray:
    """(3,) where the expert closes the gripper on ``block``: just over its centre."""
    return sc.block_pos(*block) + np.array([0.0, 0.0, _GRASP_DZ_M])


def finger_axis(sc: Scene) -> np.ndarray:
    """(3,) unit x-y direction the fingers close along (the finger joints slide along the
    hand's y axis; the TCP frame is the hand's)."""
    y = sc.tcp_pose()[1][:, 1]
    axis = np.array([y[0], y[1], 0.0])
    return axis / max(float(np.linalg.norm(axis)), 1e-9)


def finger_clearance(sc: Scene, block: tuple[str, str]) -> float:
    """How far (m) the TCP may be off ``block``'s centre along :func:`finger_axis` before an
    open pad comes down on its top: the pads' half opening less the block's half size."""
    return names.GRIPPER_MAX_OPENING_M / 2 - sc.block_half_m(*block)


def tool_yaw_to_block(sc: Scene, block: tuple[str, str]) -> float:
    """How far the tool is turned from ``block``'s faces (rad, in [-pi/4, pi/4)): 0 when the
    fingers close square on two faces."""
    return _wrap(_block_yaw(sc.block_mat(*block)) - _tool_yaw(sc.tcp_pose()[1]), np.pi / 2)


def _plan_reach(sc: Scene, task: TaskSpec, turn: str) -> ExpertPlan:
    tcp, mat = sc.tcp_pose()
    target = reach_target(sc, task.block)
    yaw = _grasp_yaw(sc, task.block, _tool_yaw(mat), turn)
    if np.linalg.norm(tcp - target) < _HOLD_TOL_M:
        return ExpertPlan("hold", target, _OPEN, yaw)
    if tcp[2] < target[2] - 0.01 and np.linalg.norm(tcp[:2] - target[:2]) > 0.03:
        # below the target beside the block: up first, then across
        return ExpertPlan("rise", np.array([tcp[0], tcp[1], target[2] + 0.03]), _OPEN, yaw)
    return ExpertPlan("reach", target, _OPEN, yaw)


def _plan_push(sc: Scene, task: TaskSpec) -> ExpertPlan:
    tcp, mat = sc.tcp_pose()
    b = task.block
    pos = sc.block_pos(*b)
    half = sc.block_half_m(*b)
    zone = sc.ids.zone_pos[task.params["zone"]]
    to_zone = zone[:2] - pos[:2]
    dist = float(np.linalg.norm(to_zone))
    standoff = half + 0.018
    tool_yaw = _tool_yaw(mat)
    u = to_zone / max(dist, 1e-9)
    rel = tcp[:2] - pos[:2]
    along = -float(rel @ u)  # how far behind the block's centre the TCP is
    lateral = abs(float(rel[0] * u[1] - rel[1] * u[0]))
    pushing = tcp[2] < _PUSH_Z_M + 0.008 and lateral < 0.025 and 0.0 < along < standoff + 0.045
    in_zone = dist < names.ZONE_RADIUS_M - 0.005
    if dist < _PUSH_DONE_M or (in_zone and not pushing):
        # done: hold behind the block on the line it came along, or where the TCP is when it
        # is not at the block (pushing on to the very centre would chase a line whose
        # direction turns ever faster there)
        tb = pos[:2] - tcp[:2]
        n = float(np.linalg.norm(tb))
        if n < standoff + 0.03 and tcp[2] < _PUSH_Z_M + 0.02:
            v = tb / max(n, 1e-9)
            yaw = _nearest_yaw(float(np.arctan2(v[1], v[0])), np.pi, tool_yaw)
            target = np.array([*(pos[:2] - v * standoff), _PUSH_Z_M])
            return ExpertPlan("hold", target, _CLOSED, yaw)
        return ExpertPlan("hold", tcp, _CLOSED)
    # the fingers' closing axis across the push
    yaw = _nearest_yaw(float(np.arctan2(u[1], u[0])), np.pi, tool_yaw)
    behind = pos[:2] - u * (standoff + 0.03)
    if pushing:
        # push: follow the line through the block to the zone centre, slowly (at most 8 mm
        # per tick) so the block does not slide past the zone
        target = np.array([*(pos[:2] - u * (standoff - 0.02)), _PUSH_Z_M])
        return ExpertPlan("push", target, _CLOSED, yaw, gain=0.8, max_step_m=0.008)
    if np.linalg.norm(tcp[:2] - behind) < 0.015:
        return ExpertPlan("approach", np.array([*behind, _PUSH_Z_M]), _CLOSED, yaw)
    if tcp[2] < _HOVER_Z_M - 0.015:
        # low and off the line (lost the block, or someone else drove here): up first
        return ExpertPlan("rise", np.array([tcp[0], tcp[1], _HOVER_Z_M]), _CLOSED, yaw)
    return ExpertPlan("hover", np.array([*behind, _HOVER_Z_M]), _CLOSED, yaw)


def _plan_pick_and(sc: Scene, task: TaskSpec, block_start: np.ndarray, turn: str) -> ExpertPlan:
    tcp, mat = sc.tcp_pose()
    tool_yaw = _tool_yaw(mat)
    b = task.block
    pos = sc.block_pos(*b)
    half = sc.block_half_m(*b)
    opening = sc.gripper_opening_m
    grasp = grasp_point(sc, b)
    then = task.task
    if then == "place":
        dest_xy = sc.ids.bin_pos[:2]
        drop_z = 0.11 + half
        released = bool(np.all(np.abs(pos[:2] - dest_xy) < names.BIN_INNER_HALF_M))
        yaw_held = None
    elif then == "stack":
        base = sc.block_pos(*task.base_block)
        bhalf = sc.block_half_m(*task.base_block)
        dest_xy = base[:2]
        drop_z = base[2] + bhalf + half + 0.012
        released = bool(np.linalg.norm(pos[:2] - dest_xy) < bhalf and pos[2] > base[2] + bhalf)
        # turn so that the held block's faces line up with the base's
        d_yaw = _wrap(
            _block_yaw(sc.block_mat(*task.base_block)) - _block_yaw(sc.block_mat(*b)), np.pi / 2
        )
        yaw_held = tool_yaw + d_yaw
    else:  # pick
        dest_xy, drop_z, released, yaw_held = block_start[:2], 0.0, False, None

    if is_held(sc, b):
        fingers = sc.data.qvel[sc.ids.finger_dof]
        on_table = pos[2] < half + 0.01
        if on_table and float(np.abs(fingers).max()) > _GRIP_SETTLED_M_S:
            return ExpertPlan("close", grasp, _CLOSED)  # let the grip build up first
        if then == "pick":
            goal = np.asarray(block_start, dtype=np.float64) + np.array([0.0, 0.0, PICK_LIFT_M])
            if np.linalg.norm(tcp - goal) < _HOLD_TOL_M:
                return ExpertPlan("hold", goal, _CLOSED)
            if tcp[2] < goal[2] - 0.02 and np.linalg.norm(tcp[:2] - goal[:2]) > 0.02:
                return ExpertPlan("lift", np.array([pos[0], pos[1], goal[2]]), _CLOSED)
            return ExpertPlan("lift", goal, _CLOSED)
        dxy = float(np.linalg.norm(tcp[:2] - dest_xy))
        if dxy < 0.02:
            drop = np.array([*dest_xy, drop_z])
            arm_speed = float(np.linalg.norm(sc.arm_qvel))
            if np.linalg.norm(tcp - drop) < 0.006 and arm_speed < _ARM_SETTLED_RAD_S:
                return ExpertPlan("release", drop, _OPEN, yaw_held)
            # lower only once over the destination, so the block comes straight down
            z = drop_z if dxy < 0.008 else tcp[2]
            return ExpertPlan("lower", np.array([*dest_xy, z]), _CLOSED, yaw_held, gain=0.7)
        if tcp[2] < _CARRY_Z_M - 0.03:
            return ExpertPlan("lift", np.array([pos[0], pos[1], _CARRY_Z_M]), _CLOSED, yaw_held)
        return ExpertPlan("carry", np.array([*dest_xy, _CARRY_Z_M]), _CLOSED, yaw_held)

    rel = pos - tcp
    if released:
        if np.linalg.norm(rel[:2]) < 0.02 and abs(rel[2]) < 0.03 and opening < 2 * half + 0.015:
            return ExpertPlan("release", tcp, _OPEN)  # still opening around the block: wait
        up = np.array([*dest_xy, drop_z + _RETREAT_DZ_M])
        phase = "hold" if np.linalg.norm(tcp - up) < _HOLD_TOL_M else "retreat"
        return ExpertPlan(phase, up, _OPEN)

    # grasp the block
    yaw = _grasp_yaw(sc, b, tool_yaw, turn)
    xy_err = float(np.linalg.norm(rel[:2]))
    above = np.array([pos[0], pos[1], pos[2] + half + _ABOVE_DZ_M])
    if xy_err < 0.012 and abs(tcp[2] - grasp[2]) < 0.012:
        return ExpertPlan("close", grasp, _CLOSED, yaw)
    if xy_err < 0.015:
        ready = opening > 2 * half + 0.01 and abs(yaw - tool_yaw) < 0.15
        if ready and tcp[2] > grasp[2]:
            return ExpertPlan("descend", grasp, _OPEN, yaw)
        # over the block but not open or not turned yet: wait clear of its top face
        # ("descending": go down to there while turning)
        clear = pos[2] + half + _CLEAR_DZ_M
        z = clear if turn == "descending" else max(float(tcp[2]), clear)
        return ExpertPlan("above", np.array([pos[0], pos[1], z]), _OPEN, yaw)
    if tcp[2] < above[2] - 0.03:
        if xy_err < _SIDEWAYS_M:
            # low and a few cm beside the block (a learner's typical miss): pass over the
            # tops near it and correct sideways, rather than up to the full approach height
            # and back, a motion the learner's next step would have to undo
            clear = _clear_z(sc, pos, xy_err + 0.04)
            if tcp[2] >= clear - 0.01:
                return ExpertPlan(
                    "above", np.array([pos[0], pos[1], max(tcp[2], clear)]), _OPEN, yaw
                )
            return ExpertPlan("rise", np.array([tcp[0], tcp[1], clear]), _OPEN, yaw)
        return ExpertPlan("rise", np.array([tcp[0], tcp[1], above[2]]), _OPEN, yaw)
    return ExpertPlan("above", above, _OPEN, yaw)


def _clear_z(sc: Scene, centre: np.ndarray, radius_m: float) -> float:
    """The height at which the open gripper passes over every block whose centre lies within
    ``radius_m`` (x-y) of ``centre``: the highest top face there plus ``_CLEAR_DZ_M``."""
    tops = [
        p[2] + sc.block_half_m(*b)
        for b in sc.ids.block_body
        if np.linalg.norm((p := sc.block_pos(*b))[:2] - centre[:2]) < radius_m
    ]
    return max(tops, default=float(centre[2])) + _CLEAR_DZ_M


class ScriptedExpert:
    """The scripted expert of the env's current task.

    It keeps no state of its own: :meth:`act` works in any state of the environment, after
    any actions (its own, a learner's, random ones), and gives the same action for the same
    environment state. :meth:`reset` is kept for callers that call it after ``env.reset``.

    Args:
        env: a :class:`~mmrobot.envs.tabletop.TabletopEnv` (or a wrapper of one) in
            ``ee_delta`` action mode.
        turn: when the tool turns to the block's faces (:data:`TURNS`).
    """

    def __init__(self, env: TabletopEnv, turn: str = "start") -> None:
        self.turn = check_turn(turn)
        self.env = env.unwrapped
        if self.env.config.action_mode != "ee_delta":
            raise ConfigError("the scripted experts act in 'ee_delta' action mode")
        #: the phase of the last :meth:`act` call (for display; nothing depends on it)
        self.phase = "start"

    def reset(self) -> None:
        """Check the environment was reset (the expert has nothing of its own to reset)."""
        if self.env.task is None:
            raise LifecycleError("ScriptedExpert.reset() before env.reset()")
        self.phase = "start"

    @property
    def scene(self) -> Scene:
        return self.env.scene

    def plan(self) -> ExpertPlan:
        """The plan in the current state (see :func:`expert_plan`)."""
        return expert_plan(self.env, self.turn)

    def act(self) -> np.ndarray:
        """The (7,) float32 action for the current state of the environment."""
        plan = expert_plan(self.env, self.turn)
        self.phase = plan.phase
        return plan_action(self.env.scene, plan)
