"""Forward kinematics of any site or camera of the arm model, for calibration.

:class:`~mmrobot.envs.kinematics.ArmKinematics` gives the tool centre point; calibration also
needs the F/T sensor's frame (the site of the model's ``force`` sensor) and the nominal
camera frames. Like it, this works on a private ``MjData`` and needs only the model, so a
real rig runs it on its encoder readings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.envs import names

__all__ = ["ArmFrames", "CV_FROM_MUJOCO_CAMERA"]

#: MuJoCo cameras look along -z with y up; OpenCV cameras along +z with y down.
CV_FROM_MUJOCO_CAMERA = np.diag([1.0, -1.0, -1.0])


class ArmFrames:
    """Poses in the base frame of the TCP, the F/T sensor site and the cameras, from joint angles.

    Args:
        model: ``mujoco.MjModel`` with the element names of :mod:`mmrobot.envs.names`.
    """

    def __init__(self, model: Any) -> None:
        mj = require("mujoco", "forward kinematics from the arm's MJCF model")
        self._mj = mj
        self.model = model
        self._data = mj.MjData(model)
        obj = mj.mjtObj
        jids = [mj.mj_name2id(model, obj.mjOBJ_JOINT, j) for j in names.ARM_JOINTS]
        if min(jids) < 0:
            raise ConfigError(f"the arm model lacks one of the joints {list(names.ARM_JOINTS)}")
        self._qadr = np.asarray(model.jnt_qposadr[jids], dtype=np.int64)
        self.joint_range = np.asarray(model.jnt_range[jids], dtype=np.float64).copy()
        self._tcp = mj.mj_name2id(model, obj.mjOBJ_SITE, names.TCP_SITE)
        sensor = mj.mj_name2id(model, obj.mjOBJ_SENSOR, names.FT_FORCE_SENSOR)
        self._ft_site = int(model.sensor_objid[sensor]) if sensor >= 0 else -1
        self._base = mj.mj_name2id(model, obj.mjOBJ_BODY, names.BASE_BODY)

    def _forward(self, q: np.ndarray) -> Any:
        q = np.asarray(q, dtype=np.float64).reshape(-1)
        if q.shape[0] < 6 or not np.isfinite(q[:6]).all():
            raise ValueError(f"need 6 finite joint angles, got {q}")
        d = self._data
        d.qpos[self._qadr] = q[:6]
        self._mj.mj_kinematics(self.model, d)
        return d

    def tcp(self, q: np.ndarray) -> np.ndarray:
        """(4, 4) TCP pose in the base frame (the world frame of the model: they coincide)."""
        d = self._forward(q)
        return _pose(d.site_xpos[self._tcp], d.site_xmat[self._tcp])

    def ft_sensor(self, q: np.ndarray) -> np.ndarray:
        """(4, 4) pose of the F/T sensor site (the site of the model's ``ft_force`` sensor)."""
        if self._ft_site < 0:
            raise ConfigError(
                f"the arm model has no force sensor named {names.FT_FORCE_SENSOR!r}; its site "
                "is the F/T sensor frame"
            )
        d = self._forward(q)
        return _pose(d.site_xpos[self._ft_site], d.site_xmat[self._ft_site])

    def camera_cv(self, q: np.ndarray, camera: str) -> np.ndarray:
        """(4, 4) pose of ``camera``'s OpenCV frame (x right, y down, z forward) in the base frame."""
        cid = self._mj.mj_name2id(self.model, self._mj.mjtObj.mjOBJ_CAMERA, camera)
        if cid < 0:
            raise ConfigError(f"the arm model has no camera named {camera!r}")
        d = self._forward(q)
        self._mj.mj_camlight(self.model, d)  # camera poses are not part of mj_kinematics
        out = _pose(d.cam_xpos[cid], d.cam_xmat[cid])
        out[:3, :3] = out[:3, :3] @ CV_FROM_MUJOCO_CAMERA
        return out


def _pose(pos: np.ndarray, mat: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = np.asarray(mat).reshape(3, 3)
    out[:3, 3] = pos
    return out
