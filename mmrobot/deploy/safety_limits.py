"""The safety layer's limits: :class:`SafetyLimits` (one robot's, checked on construction),
:class:`SafetyConfig` (a launch file's ``[safety]`` section with its defaults), and
:func:`limits_for_arm`, which turns the one into the other and refuses a value past the
bounds of :mod:`mmrobot.deploy.safety_bounds`. The layer that enforces them is
:class:`~mmrobot.deploy.safety.SafetyLayer`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.deploy.safety_bounds import HardwareBounds, safety_problems

__all__ = ["SafetyConfig", "SafetyLimits", "limits_for_arm"]

_LIMIT_FIELDS = (
    "joint_low_rad",
    "joint_high_rad",
    "max_velocity_rad_s",
    "max_acceleration_rad_s2",
    "workspace_low_m",
    "workspace_high_m",
    "max_gripper_force_n",
)


@dataclass(frozen=True)
class SafetyLimits:
    """Limits of one robot (all per joint unless scalar).

    Attributes:
        joint_low_rad, joint_high_rad: position limits of the arm joints.
        max_velocity_rad_s: largest joint speed a command may ask for.
        max_acceleration_rad_s2: largest change of commanded joint speed per second.
        workspace_low_m, workspace_high_m: box the end effector is kept in (base frame);
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
        for name in _LIMIT_FIELDS:
            if any(math.isnan(x) for x in np.ravel(getattr(self, name))):
                raise ConfigError(f"safety limits: {name} = {getattr(self, name)} has NaN")
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
class SafetyConfig:
    """The limits as a launch file's ``[safety]`` section gives them, with its defaults.

    Joint position limits default to the arm model's; velocity and acceleration limits are
    one value for every joint or one per joint. Every value may tighten, none loosen past
    :mod:`~mmrobot.deploy.safety_bounds` (:func:`limits_for_arm` refuses it). The grip
    force default is the packaged gripper's force range (25 N). ``mmrobot eval``
    uses these defaults unless told otherwise, so that evaluation runs under the limits of a
    launch file that does not change them. Any object with these attributes (the launch
    schema's ``SafetySection``) can stand in for it in :func:`limits_for_arm`.
    """

    joint_low_rad: tuple[float, ...] | None = None
    joint_high_rad: tuple[float, ...] | None = None
    max_velocity_rad_s: float | tuple[float, ...] = 2.0
    max_acceleration_rad_s2: float | tuple[float, ...] = 20.0
    workspace_low_m: tuple[float, float, float] = (-0.2, -0.7, 0.015)
    workspace_high_m: tuple[float, float, float] = (0.9, 0.7, 0.9)
    max_gripper_force_n: float = 25.0
    required_streams: tuple[str, ...] = ("joints",)


def limits_for_arm(
    joint_range: np.ndarray, section: Any = None, bounds: HardwareBounds | None = None
) -> SafetyLimits:
    """Limits from ``section``, refused where they pass ``bounds``.

    Args:
        joint_range: (n, 2) joint position range of the arm model (rad); used for the
            bounds when ``bounds`` is None.
        section: a :class:`SafetyConfig` or a launch file's ``[safety]`` section
            (default: ``SafetyConfig()``).
        bounds: what each limit may be at most
            (:func:`~mmrobot.deploy.safety_bounds.bounds_for_model`); default: the joint
            range and mmrobot's ceilings, with no reach for the workspace box.

    Raises:
        ConfigError: a value is not finite, not positive, or looser than its bound; the
            message names each key, its value and the bound.
    """
    section = SafetyConfig() if section is None else section
    if bounds is None:
        bounds = HardwareBounds.ceilings(joint_range)
    problems = safety_problems(section, bounds)
    if problems:
        raise ConfigError("safety limits past their bounds:\n  " + "\n  ".join(problems))
    n = len(bounds.joint_names)

    def per_joint(v: float | Sequence[float]) -> tuple[float, ...]:
        return tuple([float(v)] * n if isinstance(v, (int, float)) else [float(x) for x in v])

    return SafetyLimits(
        joint_low_rad=tuple(float(x) for x in (section.joint_low_rad or bounds.joint_low_rad)),
        joint_high_rad=tuple(float(x) for x in (section.joint_high_rad or bounds.joint_high_rad)),
        max_velocity_rad_s=per_joint(section.max_velocity_rad_s),
        max_acceleration_rad_s2=per_joint(section.max_acceleration_rad_s2),
        workspace_low_m=tuple(float(x) for x in section.workspace_low_m),  # type: ignore[arg-type]
        workspace_high_m=tuple(float(x) for x in section.workspace_high_m),  # type: ignore[arg-type]
        max_gripper_force_n=float(section.max_gripper_force_n),
        required_streams=tuple(section.required_streams),
    )
