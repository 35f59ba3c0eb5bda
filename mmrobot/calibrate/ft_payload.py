"""F/T sensor bias and payload (mass, centre of mass) by least squares over static poses.

Method: the static case of the linear payload identification of Kubus, Kröger and Wahl,
"On-line estimation of inertial parameters using a recursive total least-squares approach"
(IROS 2008), section III: at rest the wrench is linear in the unknowns. With ``w = R.T @ g``
the gravity vector in the sensor frame (``R`` sensor -> base, ``g = (0, 0, -9.81)`` m/s^2),
and the sign convention of MuJoCo's ``force``/``torque`` sensors (the wrench the sensor
exerts on the payload it carries: the payload's weight reads as ``-m w``)::

    f   = -m w           + b_f
    tau = skew(w) (m c)  + b_tau          (tau = c x f for the payload's part)

so ``[b_f, m]`` (4 unknowns) and ``[m c, b_tau]`` (6 unknowns) are each an ordinary linear
least-squares problem, stacked over the poses. Both are well posed when the gravity
directions seen in the sensor frame span three dimensions: at least three poses that are
not coplanar in that sense; :func:`gravity_spread` measures it.

:func:`payload_wrench` is the model the F/T driver's gravity compensation subtracts
(``FT300Config.payload``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmrobot.calibrate._geometry import skew
from mmrobot.core.errors import ConfigError

if TYPE_CHECKING:
    from mmrobot.calibrate.base import CalibrationRig
    from mmrobot.calibrate.kinematics import ArmFrames

__all__ = [
    "GRAVITY_M_S2",
    "FtPayloadResult",
    "fit_ft_payload",
    "gravity_spread",
    "measure_ft_payload",
    "payload_wrench",
]

#: Gravity in the robot base frame (z up), m/s^2.
GRAVITY_M_S2 = np.array([0.0, 0.0, -9.81])


@dataclass(frozen=True)
class FtPayloadResult:
    """What :func:`fit_ft_payload` measured.

    Attributes:
        bias: (6,) the sensor's offset [fx, fy, fz (N), tx, ty, tz (N*m)].
        mass_kg: payload mass.
        com_m: (3,) payload centre of mass in the sensor frame.
        residual_force_n: RMS of the force residuals over all poses.
        residual_torque_nm: RMS of the torque residuals.
        n_poses: static poses used.
        spread: :func:`gravity_spread` of the poses (0 degenerate .. 1 ideal).
    """

    bias: np.ndarray
    mass_kg: float
    com_m: np.ndarray
    residual_force_n: float
    residual_torque_nm: float
    n_poses: int
    spread: float


def gravity_spread(rotations: np.ndarray) -> float:
    """How well the gravity directions in the sensor frame span 3-D, in [0, 1].

    The smallest singular value of the (N, 3) unit gravity directions divided by
    ``sqrt(N / 3)`` (what N directions spread evenly over the sphere give).
    """
    r = np.asarray(rotations, dtype=np.float64)
    w = np.einsum("nji,j->ni", r, GRAVITY_M_S2)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    s = np.linalg.svd(w, compute_uv=False)
    return float(s[-1] / np.sqrt(len(w) / 3.0))


def fit_ft_payload(
    rotations: np.ndarray,
    wrenches: np.ndarray,
    *,
    gravity: np.ndarray = GRAVITY_M_S2,
    min_spread: float = 0.2,
) -> FtPayloadResult:
    """Fit the bias, mass and centre of mass from static poses.

    Args:
        rotations: (N, 3, 3) sensor -> base rotation at each pose (forward kinematics of the
            joint readings).
        wrenches: (N, 6) mean raw wrench at each pose (the arm at rest), sensor frame.
        gravity: gravity in the base frame, m/s^2.
        min_spread: refuse pose sets whose :func:`gravity_spread` is below this.

    Raises:
        ConfigError: wrong shapes, fewer than 4 poses, non-finite values, poses whose
            gravity directions do not span 3-D, or a negative fitted mass (a sensor that
            reports the opposite sign convention).
    """
    r = np.asarray(rotations, dtype=np.float64)
    f = np.asarray(wrenches, dtype=np.float64)
    if r.ndim != 3 or r.shape[1:] != (3, 3) or f.shape != (len(r), 6):
        raise ConfigError(
            f"need rotations (N, 3, 3) and wrenches (N, 6) of the same N, got {r.shape} and {f.shape}"
        )
    if len(r) < 4:
        raise ConfigError(f"ft-payload needs at least 4 static poses, got {len(r)}")
    if not (np.isfinite(r).all() and np.isfinite(f).all()):
        raise ConfigError("ft-payload: a rotation or wrench is not finite; check the streams")
    spread = gravity_spread(r)
    if spread < min_spread:
        raise ConfigError(
            f"ft-payload: the poses tilt the sensor too little (gravity spread {spread:.3f} < "
            f"{min_spread}); use poses that point the tool in several directions (down, "
            "sideways, both ways), e.g. more wrist rotations"
        )
    n = len(r)
    w = np.einsum("nji,j->ni", r, np.asarray(gravity, dtype=np.float64))  # R.T @ g per pose
    eye = np.eye(3)
    a_f = np.zeros((3 * n, 4))
    a_t = np.zeros((3 * n, 6))
    for i in range(n):
        a_f[3 * i : 3 * i + 3, :3] = eye
        a_f[3 * i : 3 * i + 3, 3] = -w[i]
        a_t[3 * i : 3 * i + 3, :3] = skew(w[i])
        a_t[3 * i : 3 * i + 3, 3:] = eye
    x_f, *_ = np.linalg.lstsq(a_f, f[:, :3].reshape(-1), rcond=None)
    x_t, *_ = np.linalg.lstsq(a_t, f[:, 3:].reshape(-1), rcond=None)
    mass = float(x_f[3])
    if mass <= 0.0:
        raise ConfigError(
            f"ft-payload: fitted mass {mass:.4f} kg is not positive: the sensor reports the "
            "force the payload exerts on it (the opposite of the convention here) or nothing "
            "is mounted; check the sensor's sign convention"
        )
    res_f = a_f @ x_f - f[:, :3].reshape(-1)
    res_t = a_t @ x_t - f[:, 3:].reshape(-1)
    return FtPayloadResult(
        bias=np.concatenate([x_f[:3], x_t[3:]]),
        mass_kg=mass,
        com_m=x_t[:3] / mass,
        residual_force_n=float(np.sqrt(np.mean(res_f**2))),
        residual_torque_nm=float(np.sqrt(np.mean(res_t**2))),
        n_poses=n,
        spread=spread,
    )


def payload_wrench(
    rotation: np.ndarray, mass_kg: float, com_m: np.ndarray, gravity: np.ndarray = GRAVITY_M_S2
) -> np.ndarray:
    """(6,) the payload's static wrench in the sensor frame (what compensation subtracts).

    Args:
        rotation: (3, 3) sensor -> base.
        mass_kg: payload mass.
        com_m: (3,) centre of mass in the sensor frame.
    """
    w = np.asarray(rotation, dtype=np.float64).T @ np.asarray(gravity, dtype=np.float64)
    force = -mass_kg * w
    return np.concatenate([force, np.cross(np.asarray(com_m, dtype=np.float64), force)])


def measure_ft_payload(
    rig: CalibrationRig,
    frames: ArmFrames,
    poses: np.ndarray,
    *,
    samples_per_pose: int = 50,
) -> FtPayloadResult:
    """Drive ``rig`` through ``poses`` (N, 6), average the F/T sensor at rest in each, and fit.

    The sensor's orientation at each pose is the forward kinematics (``frames.ft_sensor``) of
    the measured joint angles, not of the commanded ones.
    """
    rotations, wrenches = [], []
    for q in np.asarray(poses, dtype=np.float64):
        rig.move_arm(q)
        w = rig.read_wrench(samples_per_pose)
        rotations.append(frames.ft_sensor(rig.read_joints())[:3, :3])
        wrenches.append(np.asarray(w, dtype=np.float64).mean(axis=0))
    return fit_ft_payload(np.asarray(rotations), np.asarray(wrenches))
