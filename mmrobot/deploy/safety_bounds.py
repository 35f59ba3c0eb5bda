"""The bounds no safety limit may pass: the hardware's own, and mmrobot's ceilings.

A launch file's ``[safety]`` section (or a :class:`~mmrobot.deploy.safety.SafetyConfig`)
may tighten every limit of the safety layer and loosen none past these bounds; a value that
is not finite, not positive, or looser than its bound is a :class:`ConfigError` naming the
key, the value and the bound (docs/safety.md has the table and the reasons):

- joint position: the arm model's joint range, narrowed by the rig's servo ``min``/``max``;
- joint velocity: :data:`MAX_VELOCITY_RAD_S`, or less where the arm model declares it
  (``<custom><numeric name="mmrobot_max_velocity_rad_s">``) or the rig's servo model's
  no-load speed is lower;
- joint acceleration: :data:`MAX_ACCELERATION_RAD_S2`, or less where the arm model declares
  it (``mmrobot_max_acceleration_rad_s2``);
- workspace box: non-empty, and inside the cube around the arm's first joint whose half-side
  is the arm's reach (joint anchor to joint anchor to TCP, an upper bound for any pose) plus
  :data:`WORKSPACE_MARGIN_M`;
- gripper force: the gripper actuator's force range in the arm model, else
  :data:`MAX_GRIPPER_FORCE_N`;
- watchdog (the launch file's ``loop``): at most :data:`MAX_WATCHDOG_S` of wall time.

Only numpy is imported here; MuJoCo and the servo tables load in the functions that need them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError

__all__ = [
    "MAX_ACCELERATION_RAD_S2",
    "MAX_GRIPPER_FORCE_N",
    "MAX_VELOCITY_RAD_S",
    "MAX_WATCHDOG_S",
    "MJCF_MAX_ACCELERATION",
    "MJCF_MAX_VELOCITY",
    "WORKSPACE_MARGIN_M",
    "HardwareBounds",
    "bounds_for_model",
    "safety_problems",
    "watchdog_problem",
]

#: Joint speed no arm may be commanded past (a cobot's fastest joints, e.g. 180 deg/s).
MAX_VELOCITY_RAD_S = math.pi
#: Joint acceleration no arm may be commanded past (0 to pi rad/s in 79 ms).
MAX_ACCELERATION_RAD_S2 = 40.0
#: Grip force limit for a gripper whose model declares no force range.
MAX_GRIPPER_FORCE_N = 100.0
#: Slack around the arm's reach for the workspace box (m).
WORKSPACE_MARGIN_M = 0.05
#: Longest time without a completed control tick before the watchdog stops the arm (s).
MAX_WATCHDOG_S = 0.5
#: ``<custom><numeric>`` names an arm model may declare its limits under (1 or n values).
MJCF_MAX_VELOCITY = "mmrobot_max_velocity_rad_s"
MJCF_MAX_ACCELERATION = "mmrobot_max_acceleration_rad_s2"

_CEILING = "mmrobot's ceiling"
_AXES = ("x", "y", "z")


@dataclass(frozen=True)
class HardwareBounds:
    """What each safety limit may be at most (per joint where per joint), and why.

    Attributes:
        joint_names: the arm joints, in order.
        joint_low_rad, joint_high_rad: the allowed joint range (also the default limits).
        max_velocity_rad_s, max_acceleration_rad_s2: per joint.
        workspace_low_m, workspace_high_m: the box the workspace box must lie in.
        max_gripper_force_n: the largest grip force limit.
        origin: for each key (``joint_range``, ``max_velocity_rad_s``, ...) where its bound
            comes from, one string per joint for the per-joint keys.
    """

    joint_names: tuple[str, ...]
    joint_low_rad: tuple[float, ...]
    joint_high_rad: tuple[float, ...]
    max_velocity_rad_s: tuple[float, ...]
    max_acceleration_rad_s2: tuple[float, ...]
    workspace_low_m: tuple[float, float, float]
    workspace_high_m: tuple[float, float, float]
    max_gripper_force_n: float
    origin: dict[str, Any]

    @classmethod
    def ceilings(cls, joint_range: np.ndarray, source: str = "the arm model") -> HardwareBounds:
        """Bounds for an arm known only by its joint range: mmrobot's ceilings, and no reach
        (the workspace box must then only be finite and non-empty)."""
        joint_range = np.asarray(joint_range, np.float64)
        n = len(joint_range)
        return cls(
            joint_names=tuple(f"j{i}" for i in range(n)),
            joint_low_rad=tuple(float(x) for x in joint_range[:, 0]),
            joint_high_rad=tuple(float(x) for x in joint_range[:, 1]),
            max_velocity_rad_s=(MAX_VELOCITY_RAD_S,) * n,
            max_acceleration_rad_s2=(MAX_ACCELERATION_RAD_S2,) * n,
            workspace_low_m=(-math.inf,) * 3,  # type: ignore[arg-type]
            workspace_high_m=(math.inf,) * 3,  # type: ignore[arg-type]
            max_gripper_force_n=MAX_GRIPPER_FORCE_N,
            origin={
                "joint_range": (f"joint range of {source}",) * n,
                "max_velocity_rad_s": (_CEILING,) * n,
                "max_acceleration_rad_s2": (_CEILING,) * n,
                "workspace": "no reach known",
                "max_gripper_force_n": _CEILING,
            },
        )


def bounds_for_model(model: Any, servos: Sequence[Any] = (), source: str = "") -> HardwareBounds:
    """The bounds of the arm in a MuJoCo model, narrowed by a rig's servo entries.

    Args:
        model: a ``mujoco.MjModel`` with the element names of :mod:`mmrobot.envs.names`.
        servos: the rig's servo entries for the arm's actuator
            (:class:`~mmrobot.drivers.dynamixel.ServoConfig`: joints in order, gripper last);
            their ``min``/``max`` narrow the joint range, their model's no-load speed the
            velocity bound.
        source: the MJCF file, for messages.

    Raises:
        ConfigError: the arm is not a serial chain of hinge joints, or a declared limit
            has the wrong number of values.
    """
    import mujoco

    from mmrobot.envs import names

    src = f"arm model {source}" if source else "the arm model"
    jids = [model.joint(j).id for j in names.ARM_JOINTS]
    n = len(jids)
    if any(model.jnt_type[j] != mujoco.mjtJoint.mjJNT_HINGE for j in jids):
        raise ConfigError(f"{src}: the arm joints {names.ARM_JOINTS} must all be hinges")
    unlimited = [names.ARM_JOINTS[i] for i, j in enumerate(jids) if not model.jnt_limited[j]]
    if unlimited:
        raise ConfigError(f"{src}: arm joints {unlimited} have no range; give each a `range`")
    low = model.jnt_range[jids, 0].astype(np.float64)
    high = model.jnt_range[jids, 1].astype(np.float64)
    range_origin = [f"joint range of {src}"] * n
    vel = np.full(n, MAX_VELOCITY_RAD_S)
    vel_origin = [_CEILING] * n
    acc = np.full(n, MAX_ACCELERATION_RAD_S2)
    acc_origin = [_CEILING] * n
    for name, values, origins in (
        (MJCF_MAX_VELOCITY, vel, vel_origin),
        (MJCF_MAX_ACCELERATION, acc, acc_origin),
    ):
        declared = _numeric(model, name, n, src)
        for i in np.flatnonzero(declared < values) if declared is not None else ():
            values[i], origins[i] = declared[i], f"{name} in {src}"
    if servos:
        from mmrobot.drivers.protocols.dynamixel import SERVO_MODELS

        for i, s in enumerate(list(servos)[:n]):
            where = f"servo {s.id} ({s.model}) in the rig file"
            if s.min is not None and s.min > low[i]:
                low[i], range_origin[i] = s.min, f"{where} min/max"
            if s.max is not None and s.max < high[i]:
                high[i], range_origin[i] = s.max, f"{where} min/max"
            speed = SERVO_MODELS[s.model].max_velocity_rad_s
            if speed < vel[i]:
                vel[i], vel_origin[i] = speed, f"{where}: no-load speed"
    centre, reach = _reach(model, jids, src)
    half = reach + WORKSPACE_MARGIN_M
    force = MAX_GRIPPER_FORCE_N
    force_origin = _CEILING
    act = model.actuator(names.GRIPPER_ACTUATOR)
    if model.actuator_forcelimited[act.id]:
        declared_force = float(np.max(np.abs(model.actuator_forcerange[act.id])))
        if declared_force < force:
            force = declared_force
            force_origin = f"force range of {names.GRIPPER_ACTUATOR} in {src}"
    return HardwareBounds(
        joint_names=tuple(names.ARM_JOINTS),
        joint_low_rad=tuple(float(x) for x in low),
        joint_high_rad=tuple(float(x) for x in high),
        max_velocity_rad_s=tuple(float(x) for x in vel),
        max_acceleration_rad_s2=tuple(float(x) for x in acc),
        workspace_low_m=tuple(float(x) for x in centre - half),  # type: ignore[arg-type]
        workspace_high_m=tuple(float(x) for x in centre + half),  # type: ignore[arg-type]
        max_gripper_force_n=force,
        origin={
            "joint_range": tuple(range_origin),
            "max_velocity_rad_s": tuple(vel_origin),
            "max_acceleration_rad_s2": tuple(acc_origin),
            "workspace": f"reach {reach:.3g} m around {names.ARM_JOINTS[0]} at "
            f"{_fmt(centre)} m + {WORKSPACE_MARGIN_M:g} m margin, {src}",
            "max_gripper_force_n": force_origin,
        },
    )


def _numeric(model: Any, name: str, n: int, src: str) -> np.ndarray | None:
    try:
        data = np.asarray(model.numeric(name).data, np.float64)
    except KeyError:
        return None
    if data.size not in (1, n):
        raise ConfigError(f"{src}: <numeric name={name!r}> needs 1 or {n} values, has {data.size}")
    if not np.all(np.isfinite(data) & (data > 0)):
        raise ConfigError(f"{src}: <numeric name={name!r}> must be finite and > 0, got {data}")
    return np.broadcast_to(data, (n,)).copy()


def _reach(model: Any, jids: list[int], src: str) -> tuple[np.ndarray, float]:
    """(first joint's anchor, longest possible distance from it to the TCP): the sum of the
    anchor-to-anchor and last-anchor-to-TCP distances, each fixed in one link."""
    import mujoco

    from mmrobot.envs import names

    site = model.site(names.TCP_SITE)
    bodies = [int(model.jnt_bodyid[j]) for j in jids] + [int(site.bodyid[0])]
    for parent, child in zip(bodies, bodies[1:]):
        b = child
        while b not in (parent, 0):
            b = int(model.body_parentid[b])
        if b != parent:
            raise ConfigError(f"{src}: the arm joints and {names.TCP_SITE} are not one chain")
    data = mujoco.MjData(model)
    mujoco.mj_kinematics(model, data)
    points = np.vstack([data.xanchor[jids], data.site_xpos[site.id]])
    return points[0].copy(), float(np.sum(np.linalg.norm(np.diff(points, axis=0), axis=1)))


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple, np.ndarray)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool):
        return f"{float(v):.4g}"
    return repr(v)


def _per_joint(value: Any, n: int) -> list[float] | None:
    if isinstance(value, (int, float)):
        return [float(value)] * n
    values = [float(x) for x in value]
    return values if len(values) == n else None


def safety_problems(section: Any, bounds: HardwareBounds, prefix: str = "safety") -> list[str]:
    """Everything wrong with a ``[safety]`` section against ``bounds``, one line each:
    ``safety.KEY = VALUE: what; the bound is BOUND (where it comes from)``."""
    problems: list[str] = []
    n = len(bounds.joint_names)

    def bad(key: str, value: Any, what: str, bound: Any, unit: str, origin: str) -> None:
        problems.append(
            f"{prefix}.{key} = {_fmt(value)}: {what}; the bound is {_fmt(bound)} {unit} ({origin})"
        )

    for key, sign in (("joint_low_rad", -1), ("joint_high_rad", 1)):
        value = getattr(section, key)
        if value is None:
            continue
        hw = getattr(bounds, key)
        if len(value) != n:
            problems.append(f"{prefix}.{key} = {_fmt(value)}: needs {n} values, one per joint")
            continue
        for i, v in enumerate(value):
            if not math.isfinite(v) or sign * (v - hw[i]) > 0:
                side = "below" if sign < 0 else "above"
                what = f"joint {bounds.joint_names[i]} {_fmt(v)} rad is {side} the arm's range"
                if not math.isfinite(v):
                    what = f"joint {bounds.joint_names[i]} {_fmt(v)} rad is not finite"
                bad(key, value, what, hw[i], "rad", bounds.origin["joint_range"][i])
    low = section.joint_low_rad or bounds.joint_low_rad
    high = section.joint_high_rad or bounds.joint_high_rad
    if len(low) == n and len(high) == n:
        for i in range(n):
            if low[i] >= high[i]:
                problems.append(
                    f"{prefix}.joint_low_rad/joint_high_rad: joint {bounds.joint_names[i]} low "
                    f"{_fmt(low[i])} rad is not below high {_fmt(high[i])} rad"
                )
    for key, unit in (("max_velocity_rad_s", "rad/s"), ("max_acceleration_rad_s2", "rad/s^2")):
        value = getattr(section, key)
        values = _per_joint(value, n)
        if values is None:
            problems.append(f"{prefix}.{key} = {_fmt(value)}: needs 1 or {n} values")
            continue
        hw, origin = getattr(bounds, key), bounds.origin[key]
        reported: set[tuple[float, str]] = set()
        for i, v in enumerate(values):
            if not (math.isfinite(v) and v > 0):
                what = "must be finite and > 0"
            elif v > hw[i]:
                what = f"joint {bounds.joint_names[i]} {_fmt(v)} {unit} is too loose"
            else:
                continue
            if (hw[i], origin[i]) not in reported:  # one line per distinct bound
                reported.add((hw[i], origin[i]))
                bad(key, value, what, hw[i], unit, origin[i])
    box = [section.workspace_low_m, section.workspace_high_m]
    for key, value, hw, side in (
        ("workspace_low_m", box[0], bounds.workspace_low_m, -1),
        ("workspace_high_m", box[1], bounds.workspace_high_m, 1),
    ):
        if len(value) != 3:
            problems.append(f"{prefix}.{key} = {_fmt(value)}: needs 3 values (x, y, z)")
            continue
        wrong = [
            f"{_AXES[i]} {_fmt(v)} m"
            for i, v in enumerate(value)
            if not math.isfinite(v) or side * (v - hw[i]) > 0
        ]
        if wrong:
            what = f"{', '.join(wrong)} beyond the arm's reach"
            bad(key, value, what, hw, "m", bounds.origin["workspace"])
    if len(box[0]) == 3 and len(box[1]) == 3:
        for i in range(3):
            if not box[0][i] < box[1][i]:
                problems.append(
                    f"{prefix}.workspace_low_m = {_fmt(box[0])}, workspace_high_m = "
                    f"{_fmt(box[1])}: the box is empty in {_AXES[i]}; the bound for low is "
                    f"below high ({_fmt(box[1][i])} m)"
                )
    force = section.max_gripper_force_n
    if not (math.isfinite(force) and force > 0):
        what = "must be finite and > 0"
    elif force > bounds.max_gripper_force_n:
        what = "too loose"
    else:
        what = ""
    if what:
        origin = bounds.origin["max_gripper_force_n"]
        bad("max_gripper_force_n", force, what, bounds.max_gripper_force_n, "N", origin)
    return problems


def watchdog_problem(rate_hz: float, watchdog_periods: int, prefix: str = "loop") -> str | None:
    """Why ``watchdog_periods`` at ``rate_hz`` is longer than :data:`MAX_WATCHDOG_S`, or None."""
    seconds = watchdog_periods / rate_hz
    if seconds <= MAX_WATCHDOG_S * (1 + 1e-9):
        return None
    most = math.floor(MAX_WATCHDOG_S * rate_hz + 1e-9)
    return (
        f"{prefix}.watchdog_periods = {watchdog_periods}: {watchdog_periods} periods at "
        f"{rate_hz:g} Hz is {seconds:.4g} s without a completed tick; the bound is "
        f"{MAX_WATCHDOG_S:g} s ({most} periods at {rate_hz:g} Hz)"
    )
