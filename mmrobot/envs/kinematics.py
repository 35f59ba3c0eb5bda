"""Forward kinematics of the arm from its MJCF model: joint angles -> tool centre point pose.

This is the one implementation of the arm's forward kinematics. It needs only the model
(``mujoco.MjModel`` of ``envs/tabletop.xml`` or any MJCF with the element names of
:mod:`mmrobot.envs.names`), not a running simulation, so a real rig computes its ``ee_pose``
stream the same way from its encoder readings: load the arm's MJCF, build one
:class:`ArmKinematics`, call :meth:`ArmKinematics.ee_pose_vector` per joint sample.

Each instance owns a private ``MjData`` (``mj_kinematics`` on it touches nothing else), so it
is safe to use beside a simulation that is stepping the model's main data.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.envs import names

__all__ = ["EE_POSE_DIM", "ArmKinematics", "rotation_6d", "tcp_lever_arms_m"]

#: Length of :meth:`ArmKinematics.ee_pose_vector`: position (3) + two rotation columns (6).
EE_POSE_DIM = 9


def rotation_6d(mat: np.ndarray) -> np.ndarray:
    """The continuous 6-D rotation representation (Zhou et al. 2019, "On the continuity of
    rotation representations in neural networks"): the first two columns of ``mat`` (3, 3),
    concatenated -> (6,)."""
    m = np.asarray(mat)
    return np.concatenate([m[:, 0], m[:, 1]])


class ArmKinematics:
    """Forward kinematics of the six arm joints to the TCP site, on a private ``MjData``.

    Args:
        model: a ``mujoco.MjModel`` that defines :data:`~mmrobot.envs.names.ARM_JOINTS` and
            :data:`~mmrobot.envs.names.TCP_SITE` (the scene's arm, or the arm alone).

    Raises:
        ConfigError: the model lacks one of those elements.

    The joints other than the arm's (fingers, free blocks) stay at the model's reference
    configuration ``qpos0``; they do not move the TCP.
    """

    def __init__(self, model: Any) -> None:
        mujoco = require("mujoco", "forward kinematics from the arm's MJCF model")
        self._mj = mujoco
        self.model = model
        self._data = mujoco.MjData(model)
        joint = mujoco.mjtObj.mjOBJ_JOINT
        site = mujoco.mjtObj.mjOBJ_SITE
        jids = [mujoco.mj_name2id(model, joint, j) for j in names.ARM_JOINTS]
        tcp = mujoco.mj_name2id(model, site, names.TCP_SITE)
        missing = [n for n, i in zip(names.ARM_JOINTS, jids, strict=True) if i < 0]
        if tcp < 0:
            missing.append(names.TCP_SITE)
        if missing:
            raise ConfigError(
                f"the arm model has no element(s) {missing}; forward kinematics needs the joints "
                f"{list(names.ARM_JOINTS)} and the site {names.TCP_SITE!r} (mmrobot/envs/names.py)"
            )
        self._qpos_adr = np.asarray(model.jnt_qposadr[jids], dtype=np.int64)
        self._dof_adr = np.asarray(model.jnt_dofadr[jids], dtype=np.int64)
        self._tcp = int(tcp)
        self._jacp = np.zeros((3, model.nv))

    def tcp_pose(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP pose for arm joint angles ``q``.

        Args:
            q: (6,) joint angles, rad, in :data:`~mmrobot.envs.names.ARM_JOINTS` order (a
                longer vector, e.g. the ``joints`` stream's 7 values, uses its first six).

        Returns:
            position (3,) float64 metres and rotation matrix (3, 3) float64, base frame.
        """
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape[0] < 6 or not np.isfinite(q[:6]).all():
            raise ValueError(f"need 6 finite joint angles, got {q}")
        d = self._data
        d.qpos[self._qpos_adr] = q[:6]
        self._mj.mj_kinematics(self.model, d)
        return d.site_xpos[self._tcp].copy(), d.site_xmat[self._tcp].reshape(3, 3).copy()

    def tcp_jacobian(self, q: np.ndarray) -> np.ndarray:
        """(3, 6) float64: d(TCP position)/d(arm joint angles) at ``q`` (6,), m per rad, from
        MuJoCo's analytic site Jacobian (``mj_jacSite``): one kinematics pass, where a
        finite-difference Jacobian needs seven."""
        d = self._data
        d.qpos[self._qpos_adr] = np.asarray(q, dtype=np.float64).reshape(-1)[:6]
        self._mj.mj_kinematics(self.model, d)
        self._mj.mj_comPos(self.model, d)  # mj_jacSite needs the com-based frames
        self._mj.mj_jacSite(self.model, d, self._jacp, None, self._tcp)
        return self._jacp[:, self._dof_adr].copy()

    def ee_pose_vector(self, q: np.ndarray) -> np.ndarray:
        """(9,) float32: TCP position (3,) then the first two columns of its rotation (6,)."""
        pos, mat = self.tcp_pose(q)
        return np.concatenate([pos, rotation_6d(mat)]).astype(np.float32)


def tcp_lever_arms_m(model: Any) -> np.ndarray | None:
    """Per arm joint, a bound on the TCP's distance from that joint's axis, in every pose.

    Rotating a hinge by ``dq`` moves a point at distance ``r`` from its axis by at most
    ``r * |dq|``, so for any two arm configurations ``a`` and ``b`` (other joints fixed)
    ``|tcp(a) - tcp(b)| <= sum_j lever_j * |a_j - b_j|``. The bound adds the model's fixed
    offsets along the chain from the joint to the TCP site: the site's position in its body,
    each body's position in its parent, twice each joint position in a body (a hinge whose
    anchor is off the body's origin moves that origin within that radius).

    Args:
        model: a ``mujoco.MjModel`` with :data:`~mmrobot.envs.names.ARM_JOINTS` and
            :data:`~mmrobot.envs.names.TCP_SITE`.

    Returns:
        (6,) metres in :data:`~mmrobot.envs.names.ARM_JOINTS` order, or None when a joint on
        the chain from the world to the TCP is not one of the arm's hinges (a slide, ball or
        free joint, or a joint that is not the arm's: the bound would not hold).
    """
    mujoco = require("mujoco", "kinematic bounds from the arm's MJCF model")
    joint = mujoco.mjtObj.mjOBJ_JOINT
    jids = [mujoco.mj_name2id(model, joint, j) for j in names.ARM_JOINTS]
    tcp = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, names.TCP_SITE)
    if tcp < 0 or min(jids) < 0:
        return None
    hinge = int(mujoco.mjtJoint.mjJNT_HINGE)
    lever = np.zeros(len(jids))
    below = float(np.linalg.norm(model.site_pos[tcp]))  # offsets from a body's frame to the TCP
    body = int(model.site_bodyid[tcp])
    while body > 0:
        first, count = int(model.body_jntadr[body]), int(model.body_jntnum[body])
        own = [first + k for k in range(count)]
        if any(j not in jids or int(model.jnt_type[j]) != hinge for j in own):
            return None
        anchors = sum(2.0 * float(np.linalg.norm(model.jnt_pos[j])) for j in own)
        for j in own:
            lever[jids.index(j)] = below + anchors
        below += float(np.linalg.norm(model.body_pos[body])) + anchors
        body = int(model.body_parentid[body])
    return lever
