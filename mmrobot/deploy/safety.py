"""The safety layer between policy and actuator.

Everything the control loop sends passes through :meth:`SafetyLayer.filter`; a launch file
can set the limits but cannot remove the layer. Commands are joint-space targets: the arm's
joint positions (rad) followed by the gripper opening command. Each check either clamps the
command to a limit (position, velocity, acceleration, gripper force) and reports it, or
rejects the command and holds the last safe one (non-finite values, end effector outside the
workspace box, stale required sensors).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from mmrobot.core.errors import ConfigError

__all__ = ["SafetyEvent", "SafetyLimits", "SafetyLayer"]


@dataclass(frozen=True)
class SafetyLimits:
    """Limits of one robot (all per joint unless scalar).

    Attributes:
        joint_low_rad, joint_high_rad: position limits of the arm joints.
        max_velocity_rad_s: largest joint speed a command may ask for.
        max_acceleration_rad_s2: largest change of commanded joint speed per second.
        workspace_low_m, workspace_high_m: box the end effector must stay in (base frame);
            checked when the layer has a forward-kinematics function.
        gripper_low, gripper_high: range of the gripper command.
        max_gripper_force_n: above this measured grip force the gripper may not close further.
        required_streams: streams without which the robot holds position.
    """

    joint_low_rad: tuple[float, ...]
    joint_high_rad: tuple[float, ...]
    max_velocity_rad_s: tuple[float, ...]
    max_acceleration_rad_s2: tuple[float, ...]
    workspace_low_m: tuple[float, float, float] = (-np.inf, -np.inf, -np.inf)
    workspace_high_m: tuple[float, float, float] = (np.inf, np.inf, np.inf)
    gripper_low: float = 0.0
    gripper_high: float = 1.0
    max_gripper_force_n: float = np.inf
    required_streams: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.joint_low_rad)
        for name in ("joint_high_rad", "max_velocity_rad_s", "max_acceleration_rad_s2"):
            if len(getattr(self, name)) != n:
                raise ConfigError(
                    f"safety limits: {name} has {len(getattr(self, name))} values, "
                    f"joint_low_rad has {n}; give one per joint"
                )
        if any(lo >= hi for lo, hi in zip(self.joint_low_rad, self.joint_high_rad)):
            raise ConfigError("safety limits: every joint_low_rad must be below joint_high_rad")
        if any(v <= 0 for v in (*self.max_velocity_rad_s, *self.max_acceleration_rad_s2)):
            raise ConfigError("safety limits: velocity and acceleration limits must be > 0")
        if any(lo >= hi for lo, hi in zip(self.workspace_low_m, self.workspace_high_m)):
            raise ConfigError("safety limits: workspace_low_m must be below workspace_high_m")

    @property
    def n_joints(self) -> int:
        return len(self.joint_low_rad)


@dataclass(frozen=True)
class SafetyEvent:
    """What the layer did to one command: ``kind`` is the check, ``detail`` the numbers."""

    t_ns: int
    kind: str
    detail: str


@dataclass
class SafetyLayer:
    """Filters joint-space commands against :class:`SafetyLimits`.

    Args:
        limits: the robot's limits.
        period_s: time between commands (for velocity and acceleration limits).
        forward_kinematics: joint positions (n,) -> end-effector position (3,) in the base
            frame; without it the workspace box is not checked.
    """

    limits: SafetyLimits
    period_s: float
    forward_kinematics: Callable[[np.ndarray], np.ndarray] | None = None
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

    def reset(self, measured: np.ndarray) -> None:
        """Start from the measured state (joints + gripper): the first hold target."""
        measured = np.asarray(measured, np.float64)
        self._check_size(measured)
        self._last = measured.copy()
        self._last_velocity = np.zeros(self.limits.n_joints)

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

    def record(self, t_ns: int, kind: str, detail: str) -> None:
        """Log a safety event (the loop records rejected chunks here too)."""
        self.events.append(SafetyEvent(t_ns, kind, detail))
        if kind == "hold":
            self.n_holds += 1

    def hold(self, t_ns: int, reason: str) -> np.ndarray:
        """Hold the last safe command, recording why."""
        if self._last is None:
            raise RuntimeError("safety layer: hold() before reset(); call reset(measured) first")
        self.record(t_ns, "hold", reason)
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
        if self._last is None:
            raise RuntimeError("safety layer: filter() before reset(); call reset(measured) first")
        if stream_valid is not None:
            stale = [s for s in self.limits.required_streams if not stream_valid.get(s, False)]
            if stale:
                return self.hold(t_ns, f"required streams invalid: {stale}")
        if not np.all(np.isfinite(command)):
            return self.hold(t_ns, f"non-finite command {command.tolist()}")
        n = self.limits.n_joints
        q = command[:n]
        q_prev = self._last[:n]
        clamped = np.clip(q, self._low, self._high)
        if not np.array_equal(clamped, q):
            self.record(t_ns, "joint_limit", f"joints {np.flatnonzero(clamped != q).tolist()}")
        velocity = (clamped - q_prev) / self.period_s
        v_prev = self._last_velocity if self._last_velocity is not None else np.zeros(n)
        dv_max = self._amax * self.period_s
        v_acc = np.clip(velocity, v_prev - dv_max, v_prev + dv_max)
        v_safe = np.clip(v_acc, -self._vmax, self._vmax)
        if not np.allclose(v_safe, velocity, rtol=0, atol=1e-12):
            kind = (
                "velocity_limit" if np.any(np.abs(velocity) > self._vmax) else "acceleration_limit"
            )
            self.record(t_ns, kind, f"max |v| asked {np.abs(velocity).max():.3f} rad/s")
        q_safe = q_prev + v_safe * self.period_s
        if self.forward_kinematics is not None:
            ee = np.asarray(self.forward_kinematics(q_safe), np.float64)
            lo = np.asarray(self.limits.workspace_low_m)
            hi = np.asarray(self.limits.workspace_high_m)
            if np.any(ee < lo) or np.any(ee > hi):
                return self.hold(t_ns, f"end effector {np.round(ee, 3).tolist()} outside workspace")
        gripper = float(np.clip(command[n], self.limits.gripper_low, self.limits.gripper_high))
        too_hard = gripper_force_n is not None and gripper_force_n > self.limits.max_gripper_force_n
        if too_hard and gripper < self._last[n]:
            # Past the force limit the gripper may open but not close further.
            self.record(t_ns, "gripper_force", f"{gripper_force_n:.1f} N > limit")
            gripper = float(self._last[n])
        out = np.concatenate([q_safe, [gripper]])
        self._last = out
        self._last_velocity = v_safe
        return out.copy()

    def counts(self) -> dict[str, int]:
        """How many events of each kind so far."""
        out: dict[str, int] = {}
        for e in self.events:
            out[e.kind] = out.get(e.kind, 0) + 1
        return out
