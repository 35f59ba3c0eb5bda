"""Generated calibration poses: well spread, inside the joint limits, collision-free.

Candidates are drawn around a start configuration and checked on the arm's kinematic model
(joint limits shrunk by a margin, the TCP above the table, no contact of the hand with
anything, nor of a moving link with the table, a block or a link more than two joints away:
``mj_fwdPosition`` on a private ``MjData``); from those that
pass, farthest-point sampling keeps the ``n`` most spread by the criterion of each
procedure (gravity direction in the sensor frame for ft-payload, camera viewpoint for the
camera procedures). Poses are deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from mmrobot.calibrate.ft_payload import GRAVITY_M_S2
from mmrobot.calibrate.kinematics import ArmFrames
from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.envs import names

__all__ = ["PoseChecker", "farthest_point_order", "ft_payload_poses"]


class PoseChecker:
    """Whether joint angles are safe on the arm's model.

    Args:
        model: the arm's ``mujoco.MjModel`` (a scene with the names of :mod:`mmrobot.envs.names`).
        joint_range: (6, 2) limits to respect (e.g. the rig's servo limits), rad.
        margin_rad: kept away from each limit.
        min_tcp_z_m: lowest allowed TCP height above the base (table) plane.
    """

    def __init__(
        self,
        model: Any,
        joint_range: np.ndarray,
        *,
        margin_rad: float = 0.1,
        min_tcp_z_m: float = 0.12,
    ) -> None:
        mj = require("mujoco", "checking calibration poses on the arm model")
        self._mj = mj
        self.model = model
        self.frames = ArmFrames(model)
        self._data = mj.MjData(model)
        rng = np.asarray(joint_range, dtype=np.float64)
        self.lo, self.hi = rng[:, 0] + margin_rad, rng[:, 1] - margin_rad
        self.min_tcp_z_m = min_tcp_z_m
        obj = mj.mjtObj
        jids = [mj.mj_name2id(model, obj.mjOBJ_JOINT, j) for j in names.ARM_JOINTS]
        self._qadr = np.asarray(model.jnt_qposadr[jids], dtype=np.int64)
        hand = mj.mj_name2id(model, obj.mjOBJ_BODY, names.HAND_BODY)
        base = mj.mj_name2id(model, obj.mjOBJ_BODY, names.BASE_BODY)
        parent = np.asarray(model.body_parentid)

        def ancestors(b: int) -> list[int]:
            out = []
            while b > 0:
                out.append(b)
                b = int(parent[b])
            return out

        chains = [ancestors(b) for b in range(model.nbody)]
        # the hand and everything it carries: any contact of these is a collision
        in_hand = np.array([hand in c for c in chains])
        # the links that move (below the fixed base): a contact with the table, the bin, a
        # block or a link further than two joints along the chain is a collision; links
        # two joints apart may overlap by design at the joint between them
        moving = np.array([base in c and b != base for b, c in enumerate(chains)])
        self._hand_geom = in_hand[model.geom_bodyid]
        self._moving_body = moving
        self._chains = chains

    def _links_may_touch(self, b1: int, b2: int) -> bool:
        c1, c2 = self._chains[b1], self._chains[b2]
        if b2 in c1:
            return c1.index(b2) <= 2
        if b1 in c2:
            return c2.index(b1) <= 2
        return False

    def ok(self, q: np.ndarray) -> bool:
        q = np.asarray(q, dtype=np.float64)
        if (q < self.lo).any() or (q > self.hi).any():
            return False
        if self.frames.tcp(q)[2, 3] < self.min_tcp_z_m:
            return False
        d = self._data
        d.qpos[:] = self.model.qpos0
        d.qpos[self._qadr] = q
        self._mj.mj_fwdPosition(self.model, d)
        n = int(d.ncon)
        if n:
            g1, g2 = d.contact.geom1[:n], d.contact.geom2[:n]
            if (self._hand_geom[g1] | self._hand_geom[g2]).any():
                return False
            body = self.model.geom_bodyid
            for b1, b2 in zip(body[g1], body[g2], strict=True):
                m1, m2 = self._moving_body[b1], self._moving_body[b2]
                if (m1 or m2) and not (m1 and m2 and self._links_may_touch(int(b1), int(b2))):
                    return False
        return True


def farthest_point_order(features: np.ndarray, n: int, first: int = 0) -> list[int]:
    """Indices of ``n`` rows of ``features`` (M, D), each the farthest from those chosen."""
    f = np.asarray(features, dtype=np.float64)
    chosen = [first]
    dist = np.linalg.norm(f - f[first], axis=1)
    while len(chosen) < min(n, len(f)):
        i = int(np.argmax(dist))
        chosen.append(i)
        dist = np.minimum(dist, np.linalg.norm(f - f[i], axis=1))
    return chosen


def _sample(
    checker: PoseChecker,
    start_q: np.ndarray,
    spread_rad: np.ndarray,
    n_candidates: int,
    seed: int,
    keep: Callable[[np.ndarray], bool] | None = None,
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_candidates):
        q = start_q + rng.uniform(-1.0, 1.0, 6) * spread_rad
        if checker.ok(q) and (keep is None or keep(q)):
            out.append(q)
    return np.asarray(out)


def ft_payload_poses(
    checker: PoseChecker, start_q: np.ndarray, n: int, *, seed: int = 0
) -> np.ndarray:
    """(n, 6) static poses for ft-payload: the wrist turned so that gravity, seen from the
    sensor, points in ``n`` well-spread directions (the first pose is ``start_q``)."""
    if n < 4:
        raise ConfigError(f"ft-payload needs at least 4 poses, got {n}")
    spread = np.array([0.4, 0.3, 0.3, 2.8, 1.9, 2.8])
    cand = _sample(checker, np.asarray(start_q, dtype=np.float64), spread, 40 * n, seed)
    cand = np.vstack([np.asarray(start_q, dtype=np.float64)[None], cand])
    if len(cand) < n:
        raise ConfigError(
            f"only {len(cand)} safe poses found around {np.round(start_q, 2)} for {n} wanted; "
            "widen the joint limits or start from a pose further from the table"
        )
    g = np.array([checker.frames.ft_sensor(q)[:3, :3].T @ GRAVITY_M_S2 for q in cand])
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    return cand[farthest_point_order(g, n)]


def look_at(eye: np.ndarray, target: np.ndarray, roll_rad: float = 0.0) -> np.ndarray:
    """(4, 4) OpenCV camera pose (z forward, y down) at ``eye`` looking at ``target``, turned
    by ``roll_rad`` about its optical axis; at zero roll the image's down axis is the
    direction of the base x axis seen by the camera (the arm reaches away from the base)."""
    z = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    z /= np.linalg.norm(z)
    down = np.array([1.0, 0.0, 0.0])
    y = down - z * (down @ z)
    if np.linalg.norm(y) < 1e-6:
        y = np.array([0.0, 1.0, 0.0]) - z * z[1]
    y /= np.linalg.norm(y)
    x = np.cross(y, z)
    c, s = np.cos(roll_rad), np.sin(roll_rad)
    xr, yr = c * x + s * y, -s * x + c * y
    out = np.eye(4)
    out[:3, :3] = np.stack([xr, yr, z], axis=1)
    out[:3, 3] = eye
    return out


def camera_view_poses(
    checker: PoseChecker,
    solve_ik: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    camera: str,
    start_q: np.ndarray,
    target_m: np.ndarray,
    n: int,
    *,
    distance_m: tuple[float, float] = (0.30, 0.42),
    max_tilt_rad: float = 0.6,
    max_roll_rad: float = 0.6,
    aim_jitter_m: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """(n, 6) joint angles that point an arm-mounted camera at ``target_m`` from ``n``
    well-spread viewpoints (eye-in-hand camera intrinsics and hand-eye).

    Viewpoints lie on a cap above the target (tilt from vertical up to ``max_tilt_rad``, any
    azimuth, distance in ``distance_m``), with a roll about the optical axis and the aim
    jittered; each is turned into a TCP pose with the camera's nominal mounting from the
    arm model, solved by ``solve_ik(pos, rot, q0)``, and kept only if the solution reaches
    the pose (1 mm, 0.01 rad) and passes ``checker``. Farthest-point sampling on (viewpoint
    direction, roll) keeps ``n``. Hand-eye needs rotations about different axes between
    views (Tsai and Lenz 1989, section IV): tilts in all directions and rolls give them.
    """
    frames = checker.frames
    start_q = np.asarray(start_q, dtype=np.float64)
    cam_in_tcp = np.linalg.inv(frames.tcp(start_q)) @ frames.camera_cv(start_q, camera)
    tcp_in_cam = np.linalg.inv(cam_in_tcp)
    rng = np.random.default_rng(seed)
    qs, feats = [], []
    target = np.asarray(target_m, dtype=np.float64)
    for _ in range(30 * n):
        tilt = max_tilt_rad * np.sqrt(rng.uniform())
        az = rng.uniform(-np.pi, np.pi)
        dist = rng.uniform(*distance_m)
        view = np.array([np.sin(tilt) * np.cos(az), np.sin(tilt) * np.sin(az), np.cos(tilt)])
        roll = rng.uniform(-max_roll_rad, max_roll_rad)
        aim = target + np.r_[rng.uniform(-aim_jitter_m, aim_jitter_m, 2), 0.0]
        cam = look_at(aim + dist * view, aim, roll)
        tcp = cam @ tcp_in_cam
        q = solve_ik(tcp[:3, 3], tcp[:3, :3], start_q)
        got = frames.tcp(q)
        if np.linalg.norm(got[:3, 3] - tcp[:3, 3]) > 1e-3:
            continue
        if np.linalg.norm(got[:3, :3] - tcp[:3, :3]) > 1e-2 or not checker.ok(q):
            continue
        qs.append(q)
        feats.append(np.r_[view, 0.5 * np.sin(roll), 0.5 * np.cos(roll)])
    if len(qs) < n:
        raise ConfigError(
            f"only {len(qs)} reachable, safe camera viewpoints of the target at "
            f"{np.round(target, 3)} found for {n} wanted; move the target closer to the arm "
            "or widen distance_m / the joint limits"
        )
    return np.asarray(qs)[farthest_point_order(np.asarray(feats), n)]
