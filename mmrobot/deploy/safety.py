"""The safety layer between policy and actuator.

Everything the control loop sends passes through :meth:`SafetyLayer.filter`; a launch file
can tighten the limits but cannot remove the layer, nor loosen a limit past the bounds of
:mod:`mmrobot.deploy.safety_bounds` (the hardware's own, and mmrobot's ceilings).
Commands are joint-space targets: the arm's joint positions (rad) followed by the gripper
opening command. Each check either clamps the command to a limit and reports it (joint
position, velocity, acceleration, the workspace box, gripper force), or rejects the command
and holds the last safe one. Holding is kept for the
cases where no safe command can be made from the input: non-finite values, stale required
sensors, and (in the loop) no action for the tick or the watchdog.

The limits themselves (:class:`SafetyLimits`, the launch file's :class:`SafetyConfig`,
:func:`limits_for_arm`) are in :mod:`mmrobot.deploy.safety_limits` and importable from here.

Every :class:`SafetyEvent` says which limit (``kind``), which joint, axis or stream
(``where``) and the numbers (``value`` against ``limit``); :meth:`SafetyLayer.counts` counts
them per reason (``"velocity_limit:j1"``, ``"workspace:z_low"``, ``"hold:non_finite"``).

:class:`SimSafety` is the simulated arm's side of the same path (Cartesian controller,
forward kinematics, measured state, grip force) with the layer built on it: ``mmrobot run``
(through :class:`~mmrobot.deploy.loop.ControlLoop`) and ``mmrobot eval`` both use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Observation
from mmrobot.deploy.safety_bounds import bounds_for_model
from mmrobot.deploy.safety_limits import SafetyConfig, SafetyLimits, limits_for_arm

__all__ = [
    "SafetyConfig",
    "SafetyEvent",
    "SafetyLayer",
    "SafetyLimits",
    "SimSafety",
    "limits_for_arm",
]

_AXES = ("x", "y", "z")
# the workspace correction stops within this distance of the box (m)
_WORKSPACE_TOL_M = 1e-4
# what the skipped second box check keeps in hand for rounding (m)
_STEP_MARGIN_M = 1e-9


@dataclass(frozen=True)
class SafetyEvent:
    """What the layer did to one command.

    Attributes:
        t_ns: time of the command.
        kind: the check: ``joint_limit``, ``velocity_limit``, ``acceleration_limit``,
            ``workspace``, ``gripper_force``, ``hold``, ``rejected_chunk``.
        detail: the same in words, with the numbers.
        where: the joint (``j0``...), workspace axis and side (``z_low``), ``gripper``, or for
            a hold its cause (``non_finite``, ``stale:joints``); None when nothing narrower.
        value: what the command asked (joint angle, speed, acceleration, end-effector
            coordinate, grip force), when there is one number.
        limit: the bound it was clamped to.
    """

    t_ns: int
    kind: str
    detail: str
    where: str | None = None
    value: float | None = None
    limit: float | None = None

    @property
    def reason(self) -> str:
        """``kind`` or ``kind:where``: the key events are counted under."""
        return self.kind if self.where is None else f"{self.kind}:{self.where}"


@dataclass
class SafetyLayer:
    """Filters joint-space commands against :class:`SafetyLimits`.

    Args:
        limits: the robot's limits.
        period_s: time between commands (for velocity and acceleration limits).
        forward_kinematics: joint positions (n,) -> end-effector position (3,) in the base
            frame; without it the workspace box is not checked. A target outside the box is
            moved into it (damped least squares on the numerical Jacobian of this function:
            position only, the smallest joint change), so the arm keeps moving along the
            box's faces instead of freezing.
        fk_lever_arms_m: (n,) per joint, a bound on how far the end effector moves per
            radian of that joint, in every pose: ``|fk(a) - fk(b)| <= sum_j lever_j *
            |a_j - b_j|`` (:func:`mmrobot.envs.kinematics.tcp_lever_arms_m` gives it for an
            arm model). With it the box check of the rate-limited step is skipped where the
            target's clearance from the box's faces proves that step inside too: the same
            commands and events, one forward kinematics fewer on most commands.
        fk_jacobian: joint positions (n,) -> (3, n) Jacobian of ``forward_kinematics``; with
            it, moving a target into the box costs one Jacobian per iteration instead of n
            more forward kinematics (:meth:`mmrobot.envs.kinematics.ArmKinematics.tcp_jacobian`).
    """

    limits: SafetyLimits
    period_s: float
    forward_kinematics: Callable[[np.ndarray], np.ndarray] | None = None
    fk_lever_arms_m: Sequence[float] | np.ndarray | None = None
    fk_jacobian: Callable[[np.ndarray], np.ndarray] | None = None
    events: list[SafetyEvent] = field(default_factory=list)
    n_holds: int = 0
    _last: np.ndarray | None = field(default=None, repr=False)
    _last_velocity: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.period_s <= 0:
            raise ConfigError(f"safety layer: period_s must be > 0, got {self.period_s}")
        lim = self.limits
        self._low = np.asarray(lim.joint_low_rad, np.float64)
        self._high = np.asarray(lim.joint_high_rad, np.float64)
        self._vmax = np.asarray(lim.max_velocity_rad_s, np.float64)
        self._amax = np.asarray(lim.max_acceleration_rad_s2, np.float64)
        self._box_low = np.asarray(lim.workspace_low_m, np.float64)
        self._box_high = np.asarray(lim.workspace_high_m, np.float64)
        # per-command constants, and the box as floats for the scalar in-the-box test
        self._neg_vmax = -self._vmax
        self._box = tuple(zip(self._box_low.tolist(), self._box_high.tolist(), strict=True))
        self._lever: np.ndarray | None = None
        if self.fk_lever_arms_m is not None:
            lever = np.asarray(self.fk_lever_arms_m, np.float64)
            if lever.shape != (lim.n_joints,) or not np.all(np.isfinite(lever) & (lever >= 0)):
                raise ConfigError(
                    f"safety layer: fk_lever_arms_m must be {lim.n_joints} finite values >= 0 "
                    f"(m per rad), got {self.fk_lever_arms_m!r}"
                )
            self._lever = lever

    def reset(self, measured: np.ndarray) -> None:
        """Start from the measured state (joints + gripper): the first hold target."""
        measured = np.asarray(measured, np.float64)
        self._check_size(measured)
        self._last = measured.copy()
        self._last_velocity = np.zeros(self.limits.n_joints)

    def clear(self) -> None:
        """Forget the events and holds counted so far (a new instruction or episode)."""
        self.events.clear()
        self.n_holds = 0

    @property
    def hold_command(self) -> np.ndarray | None:
        """The last command that passed (what holding position sends)."""
        return None if self._last is None else self._last.copy()

    def _check_size(self, command: np.ndarray) -> None:
        if command.shape != (self.limits.n_joints + 1,):
            raise ValueError(
                f"safety layer: command shape {command.shape} != ({self.limits.n_joints + 1},) "
                f"({self.limits.n_joints} joints + gripper)"
            )

    def record(
        self,
        t_ns: int,
        kind: str,
        detail: str,
        where: str | None = None,
        value: float | None = None,
        limit: float | None = None,
    ) -> None:
        """Log a safety event (the loop records rejected chunks here too)."""
        self.events.append(SafetyEvent(t_ns, kind, detail, where, value, limit))
        if kind == "hold":
            self.n_holds += 1

    def hold(self, t_ns: int, reason: str, cause: str | None = None) -> np.ndarray:
        """Hold the last safe command, recording why (``cause``: a short key for counting)."""
        if self._last is None:
            raise RuntimeError("safety layer: hold() before reset(); call reset(measured) first")
        self.record(t_ns, "hold", reason, cause)
        self._last_velocity = np.zeros(self.limits.n_joints)
        return self._last.copy()

    def filter(
        self,
        t_ns: int,
        command: np.ndarray,
        stream_valid: dict[str, bool] | None = None,
        gripper_force_n: float | None = None,
    ) -> np.ndarray:
        """Make ``command`` safe, or hold.

        Order: required streams and finite values (else hold); joint position limits; the
        workspace box (the target moves into it); velocity and acceleration limits from the
        last command; the box again for the limited step (a step that cannot stop in time
        is pulled back in, at up to the velocity limit); the gripper range and force limit.

        Args:
            t_ns: time of the command.
            command: (n_joints + 1,) joint targets (rad) and gripper command.
            stream_valid: the observation's validity mask, for the required streams.
            gripper_force_n: measured grip force, for the gripper force limit.

        Returns:
            The command to send: clamped to the limits, or the held last safe command.
        """
        command = np.asarray(command, np.float64)
        self._check_size(command)
        last = self._last
        if last is None:
            raise RuntimeError("safety layer: filter() before reset(); call reset(measured) first")
        if stream_valid is not None:
            stale = [s for s in self.limits.required_streams if not stream_valid.get(s, False)]
            if stale:
                return self.hold(
                    t_ns, f"required streams invalid: {stale}", f"stale:{','.join(stale)}"
                )
        if not np.isfinite(command).all():
            return self.hold(t_ns, f"non-finite command {command.tolist()}", "non_finite")
        # Per command this is a few numpy calls on (n,) arrays; the per-joint loops below run
        # only for the joints that were clamped, and their text only then. np.clip's ufunc is
        # called through the array method (same results, without np.clip's Python wrapper).
        n = self.limits.n_joints
        period = self.period_s
        q = command[:n]
        q_prev = last[:n]
        clamped = q.clip(self._low, self._high)
        if (clamped != q).any():
            for j in np.flatnonzero(clamped != q):
                self.record(
                    t_ns,
                    "joint_limit",
                    f"joint {j} asked {q[j]:.3f} rad, limit {clamped[j]:.3f} rad",
                    f"j{j}",
                    float(q[j]),
                    float(clamped[j]),
                )
        seen: set[str] = set()  # workspace events already recorded for this command
        target, moved, ee = self._into_workspace(t_ns, clamped, seen)
        velocity = (target - q_prev) / period
        v_prev = self._last_velocity if self._last_velocity is not None else np.zeros(n)
        dv_max = self._amax * period
        v_acc = velocity.clip(v_prev - dv_max, v_prev + dv_max)
        v_safe = v_acc.clip(self._neg_vmax, self._vmax)
        limited = np.abs(v_safe - velocity) > 1e-12
        if limited.any():
            self._record_rate_limits(t_ns, np.flatnonzero(limited), velocity, v_prev)
        q_safe = q_prev + v_safe * period
        if self.forward_kinematics is not None and (
            moved or not self._step_stays_in_box(ee, q_safe, target)
        ):
            # the limited step may leave the box (an arm moving fast toward the table cannot
            # stop within one period): pull it back; the box wins over the acceleration limit
            pulled, moved, _ = self._into_workspace(t_ns, q_safe, seen)
            if moved:
                dq_max = self._vmax * period
                v_safe = np.clip(pulled - q_prev, -dq_max, dq_max) / period
                q_safe = q_prev + v_safe * period
        gripper = float(command[n].clip(self.limits.gripper_low, self.limits.gripper_high))
        too_hard = gripper_force_n is not None and gripper_force_n > self.limits.max_gripper_force_n
        if too_hard and gripper < last[n]:
            # Past the force limit the gripper may open but not close further.
            self.record(
                t_ns,
                "gripper_force",
                f"grip force {gripper_force_n:.1f} N > limit {self.limits.max_gripper_force_n:.1f} N",
                "gripper",
                float(gripper_force_n),  # type: ignore[arg-type]
                float(self.limits.max_gripper_force_n),
            )
            gripper = float(last[n])
        out = np.empty(n + 1)
        out[:n] = q_safe
        out[n] = gripper
        self._last = out
        self._last_velocity = v_safe
        return out.copy()

    def _record_rate_limits(
        self, t_ns: int, joints: np.ndarray, velocity: np.ndarray, v_prev: np.ndarray
    ) -> None:
        """One velocity or acceleration event per joint whose speed was limited."""
        for j in joints:
            if abs(velocity[j]) > self._vmax[j]:
                self.record(
                    t_ns,
                    "velocity_limit",
                    f"joint {j} asked {velocity[j]:.3f} rad/s, limit {self._vmax[j]:.3f} rad/s",
                    f"j{j}",
                    float(velocity[j]),
                    float(self._vmax[j]),
                )
            else:
                accel = (velocity[j] - v_prev[j]) / self.period_s
                self.record(
                    t_ns,
                    "acceleration_limit",
                    f"joint {j} asked {accel:.1f} rad/s^2, limit {self._amax[j]:.1f} rad/s^2",
                    f"j{j}",
                    float(accel),
                    float(self._amax[j]),
                )

    # -- the workspace box
    def _into_workspace(
        self, t_ns: int, q: np.ndarray, seen: set[str]
    ) -> tuple[np.ndarray, bool, np.ndarray | None]:
        """(``q``, False, its end effector) when that is in the box, else (joints that put it
        on the nearest point of the box, True, the end effector of ``q``), recording one event
        per axis and side per command. Without forward kinematics (``q``, False, None)."""
        fk = self.forward_kinematics
        if fk is None:
            return q, False, None
        ee = np.asarray(fk(q), np.float64)
        if self._in_box(ee):
            return q, False, ee
        goal = np.clip(ee, self._box_low, self._box_high)
        if np.all(np.abs(goal - ee) <= _WORKSPACE_TOL_M):
            return q, False, ee
        for i in np.flatnonzero(np.abs(goal - ee) > _WORKSPACE_TOL_M):
            where = f"{_AXES[i]}_{'low' if ee[i] < goal[i] else 'high'}"
            if where not in seen:
                seen.add(where)
                self.record(
                    t_ns,
                    "workspace",
                    f"end effector {_AXES[i]} {ee[i]:.3f} m outside the box, clamped to "
                    f"{goal[i]:.3f} m",
                    where,
                    float(ee[i]),
                    float(goal[i]),
                )
        return self._solve_position(fk, q, ee, goal), True, ee

    def _in_box(self, ee: np.ndarray) -> bool:
        """The array test ``all(|clip(ee, low, high) - ee| <= tol)`` on Python floats, for a
        finite (3,) ``ee`` (anything else: False, and the array test decides)."""
        if ee.shape != (3,):
            return False
        for x, (low, high) in zip(ee.tolist(), self._box, strict=True):
            nearest = low if x < low else high if x > high else x  # np.clip for low <= high
            if not abs(nearest - x) <= _WORKSPACE_TOL_M:  # also False for NaN
                return False
        return True

    def _step_stays_in_box(
        self, ee: np.ndarray | None, q_step: np.ndarray, q_checked: np.ndarray
    ) -> bool:
        """Whether the box check of ``q_step`` is sure to pass, because ``q_checked`` (whose end
        effector ``ee`` passed it) is so far inside the box that the lever-arm bound of the
        move between them cannot take the end effector past the check's tolerance."""
        if self._lever is None or ee is None:
            return False
        reach = float(self._lever @ np.abs(q_step - q_checked))
        clearance = math.inf
        for x, (low, high) in zip(ee.tolist(), self._box, strict=True):
            clearance = min(clearance, x - low, high - x)
        # 1 nm of margin covers the rounding of the forward kinematics and of the check
        return clearance + _WORKSPACE_TOL_M > reach + _STEP_MARGIN_M

    def _solve_position(
        self,
        fk: Callable[[np.ndarray], np.ndarray],
        q: np.ndarray,
        ee: np.ndarray,
        goal: np.ndarray,
        iters: int = 10,
    ) -> np.ndarray:
        """Joints near ``q`` whose end effector is at ``goal``: damped least squares on the
        Jacobian of the forward kinematics (``fk_jacobian``, else finite differences),
        within the joint limits."""
        q = q.copy()
        eps, lam2 = 1e-6, 1e-4
        for _ in range(iters):
            err = goal - ee
            if np.all(np.abs(err) <= 0.1 * _WORKSPACE_TOL_M):
                break
            if self.fk_jacobian is not None:
                jac = np.asarray(self.fk_jacobian(q), np.float64)
            else:
                jac = np.empty((3, len(q)))
                for j in range(len(q)):
                    dq = np.zeros_like(q)
                    dq[j] = eps
                    jac[:, j] = (np.asarray(fk(q + dq), np.float64) - ee) / eps
            step = jac.T @ np.linalg.solve(jac @ jac.T + lam2 * np.eye(3), err)
            q = np.clip(q + step, self._low, self._high)
            ee = np.asarray(fk(q), np.float64)
        return q

    def counts(self, by: Literal["reason", "kind"] = "reason") -> dict[str, int]:
        """How many events of each reason (``kind:where``) or of each kind so far."""
        out: dict[str, int] = {}
        for e in self.events:
            key = e.reason if by == "reason" else e.kind
            out[key] = out.get(key, 0) + 1
        return out


class SimSafety:
    """The simulated tabletop arm's safety path, shared by ``mmrobot run`` and ``mmrobot eval``.

    A policy's end-effector delta action (clipped to the env's action bounds, as the env
    clips it) becomes joint targets through the env's Cartesian controller; the layer,
    with limits from the arm model narrowed by ``section``, filters them; the env then
    applies the joint targets. ``mmrobot run`` hands :meth:`measure`, :meth:`to_command`
    and :meth:`grip_force` with :attr:`layer` to its :class:`~mmrobot.deploy.ControlLoop`;
    ``mmrobot eval`` calls :meth:`start` and :meth:`command` from its own loop.

    Args:
        env: a :class:`~mmrobot.envs.tabletop.TabletopEnv` (or a wrapper of one) that takes
            joint targets (``EnvConfig(action_mode="joint")``).
        section: the limits: a :class:`SafetyConfig` or a launch file's ``[safety]``
            section (default: ``SafetyConfig()``).
        period_s: time between commands (default: the env's control period).
    """

    def __init__(self, env: Any, section: Any = None, period_s: float | None = None) -> None:
        import mujoco

        from mmrobot.envs import names
        from mmrobot.envs.kinematics import tcp_lever_arms_m
        from mmrobot.envs.tabletop import ACTION_HIGH, ACTION_LOW

        self.env = env.unwrapped
        if self.env.config.action_mode != "joint":
            raise ConfigError(
                f"the safety path sends joint targets; the env takes "
                f"{self.env.config.action_mode!r} actions. Build it with "
                "EnvConfig(action_mode='joint')"
            )
        self.scene = self.env.scene
        self._mj = mujoco
        self._fk_data = mujoco.MjData(self.scene.model)
        self._gripper_max = names.GRIPPER_MAX_OPENING_M
        self._action_low = np.asarray(ACTION_LOW, np.float64)
        self._action_high = np.asarray(ACTION_HIGH, np.float64)
        bounds = bounds_for_model(self.scene.model, source=str(self.scene.path))
        self.layer = SafetyLayer(
            limits_for_arm(self.scene.arm_range, section, bounds),
            period_s=period_s or self.env.control_period_ns / 1e9,
            forward_kinematics=self.forward_kinematics,
            fk_lever_arms_m=tcp_lever_arms_m(self.scene.model),
        )

    # -- the arm model: measured state, Cartesian commands, forward kinematics, grip force
    def measure(self, obs: Observation) -> np.ndarray:
        """Joints (6,) and gripper command [0, 1] from the joints stream; while that stream
        is invalid, the servo targets (what the arm was last told: where holding keeps it)."""
        if obs.valid.get("joints", False):
            joints = np.asarray(obs.values["joints"], np.float64)
            last = joints[-1] if joints.ndim == 2 else joints
            return np.concatenate([last[:6], [last[6] / self._gripper_max]])
        ctrl = self.scene.data.ctrl
        ids = self.scene.ids
        gripper = float(ctrl[ids.gripper_act]) / (0.5 * self._gripper_max)
        return np.concatenate([ctrl[ids.arm_act], [gripper]]).astype(np.float64)

    def to_command(self, action: np.ndarray, obs: Observation) -> np.ndarray:
        """(7,) end-effector delta action -> (7,) joint targets and gripper command."""
        a = np.clip(np.asarray(action, np.float64), self._action_low, self._action_high)
        q = self.scene.command_delta_pose(a[:6])
        return np.concatenate([q, [a[6]]])

    def forward_kinematics(self, q: np.ndarray) -> np.ndarray:
        """TCP position (3,) in the base frame for arm angles (6,)."""
        d, ids = self._fk_data, self.scene.ids
        d.qpos[ids.arm_qpos] = q
        self._mj.mj_kinematics(self.scene.model, d)
        return d.site_xpos[ids.tcp_site].copy()

    def grip_force(self, obs: Observation) -> float:
        return abs(float(self.scene.data.actuator_force[self.scene.ids.gripper_act]))

    # -- a loop of one's own
    def start(self, obs: Observation) -> None:
        """Begin an episode: clear the events, hold target = the measured state."""
        self.layer.clear()
        self.layer.reset(self.measure(obs))

    def command(self, t_ns: int, action: np.ndarray | None, obs: Observation) -> np.ndarray:
        """The joint command for one tick, as the control loop makes it: hold when no
        action covers the tick, else the action through the controller and the layer."""
        if action is None:
            return self.layer.hold(t_ns, "no action covers this time")
        return self.layer.filter(
            t_ns, self.to_command(action, obs), dict(obs.valid), self.grip_force(obs)
        )
