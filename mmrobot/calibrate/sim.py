"""The simulated calibration rig: the tabletop arm and its sensors in the calibration scene.

:class:`SimCalibrationRig` offers what a calibration procedure asks of a rig (move the arm to
joint angles and let it settle, read the joints, average the F/T sensor, grab a camera frame
at the capture resolution, take lidar scans in the sensor's own frame) and, because it is a
simulation, the ground truth each result is checked against.

Sensor errors follow :class:`~mmrobot.envs.sensor_config.SensorConfig` (Gaussian noise, a
constant bias). The simulated sensors' defaults are noise-free, so callers inject noise
explicitly; the tests use datasheet-sized values (FT 300: 0.1 N and 0.005 N*m; RPLIDAR A1:
a few millimetres of range; cameras: a few grey levels).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mmrobot.calibrate._geometry import homogeneous
from mmrobot.calibrate.kinematics import ArmFrames
from mmrobot.calibrate.targets import CalibrationScene
from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.envs import names

__all__ = [
    "DATASHEET_NOISE",
    "SimCalibrationRig",
    "SimNoise",
    "camera_in_tcp_truth",
    "intrinsics_truth",
    "payload_truth",
]


@dataclass(frozen=True)
class SimNoise:
    """Sensor errors of the simulated calibration rig.

    Attributes:
        ft_force_n, ft_torque_nm: Gaussian noise of each F/T sample.
        ft_bias: (6,) constant offset added to every F/T sample (what calibration finds).
        camera_levels: Gaussian noise of each pixel, uint8 grey levels.
        lidar_range_m: Gaussian noise of each lidar range.
        joints_rad: Gaussian noise of each joint reading.
        seed: seed of the noise generator.
    """

    ft_force_n: float = 0.0
    ft_torque_nm: float = 0.0
    ft_bias: tuple[float, ...] = (0.0,) * 6
    camera_levels: float = 0.0
    lidar_range_m: float = 0.0
    joints_rad: float = 0.0
    seed: int = 0

    def with_seed(self, seed: int) -> SimNoise:
        return replace(self, seed=seed)


#: Datasheet-sized sensor errors (the simulated sensors themselves default to none): FT 300
#: signal noise 0.1 N / 0.005 N*m and a bias to find; 3 grey levels of pixel noise; 1 cm of
#: lidar range noise (RPLIDAR A1: 1 % of range); joint readings of a 4096-tick encoder.
DATASHEET_NOISE = SimNoise(
    ft_force_n=0.1,
    ft_torque_nm=0.005,
    ft_bias=(1.5, -0.8, 2.0, 0.05, -0.03, 0.02),
    camera_levels=3.0,
    lidar_range_m=0.01,
    joints_rad=2 * 3.141592653589793 / 4096 / 12**0.5,
)


class SimCalibrationRig:
    """The tabletop arm, its wrist F/T sensor, cameras and lidar, in a calibration scene.

    Args:
        scene: from :func:`~mmrobot.calibrate.targets.build_calibration_scene`.
        noise: sensor errors.
        image_size: (width, height) camera capture resolution.
        settle_steps: physics steps (2 ms) after a move before the arm counts as at rest.
    """

    def __init__(
        self,
        scene: CalibrationScene,
        noise: SimNoise | None = None,
        *,
        image_size: tuple[int, int] = (640, 480),
        settle_steps: int = 150,
    ) -> None:
        from mmrobot.envs.scene import Scene

        self.targets = scene
        self.noise = noise or SimNoise()
        self.rng = np.random.default_rng(self.noise.seed)
        self.scene = Scene(scene.path)
        self.mj = self.scene.mujoco
        self.frames = ArmFrames(self.scene.model)
        self.image_size = image_size
        self.settle_steps = settle_steps
        self._renderer: Any = None
        self.scene.reset_arm(self.scene.home_qpos, gripper_open=0.5)
        self._settle()

    # ------------------------------------------------------------------ the rig interface
    @property
    def joint_range(self) -> np.ndarray:
        """(6, 2) arm joint limits, rad."""
        return self.scene.arm_range.copy()

    def move_arm(self, q: np.ndarray) -> None:
        """Command joint angles (6,) and wait until the arm is at rest."""
        q = np.asarray(q, dtype=np.float64)
        lo, hi = self.scene.arm_range.T
        if q.shape != (6,) or not np.isfinite(q).all() or (q < lo).any() or (q > hi).any():
            raise ConfigError(f"joint target {q} is not 6 finite angles within the joint limits")
        self.scene.reset_arm(q, gripper_open=0.5)
        self._settle()

    def _settle(self) -> None:
        m, d = self.scene.model, self.scene.data
        for _ in range(self.settle_steps):
            self.mj.mj_step(m, d)

    def read_joints(self) -> np.ndarray:
        """(6,) measured arm joint angles."""
        q = self.scene.arm_qpos.copy()
        if self.noise.joints_rad:
            q += self.rng.normal(0.0, self.noise.joints_rad, 6)
        return q

    def read_wrench(self, n_samples: int = 50) -> np.ndarray:
        """(n_samples, 6) raw F/T samples (bias and noise included), one per physics step."""
        m, d, ids = self.scene.model, self.scene.data, self.scene.ids
        nz = self.noise
        scale = np.array([nz.ft_force_n] * 3 + [nz.ft_torque_nm] * 3)
        out = np.empty((n_samples, 6))
        for k in range(n_samples):
            self.mj.mj_step(m, d)
            s = d.sensordata
            f, t = ids.ft_force_adr, ids.ft_torque_adr
            out[k, :3], out[k, 3:] = s[f : f + 3], s[t : t + 3]
        out += np.asarray(nz.ft_bias, dtype=np.float64)
        out += self.rng.normal(0.0, 1.0, out.shape) * scale
        return out

    def capture(self, camera: str = names.WRIST_CAMERA) -> np.ndarray:
        """(H, W, 3) uint8 frame of ``camera`` at :attr:`image_size`."""
        if self._renderer is None:
            w, h = self.image_size
            self._renderer = self.scene.renderer(h, w)
        self._renderer.update_scene(self.scene.data, camera=camera)
        img = self._renderer.render()
        if self.noise.camera_levels:
            img = np.clip(
                np.rint(img + self.rng.normal(0.0, self.noise.camera_levels, img.shape)), 0, 255
            ).astype(np.uint8)
        return img

    def scan(self, n_rays: int = 360, max_range_m: float = 2.0) -> np.ndarray:
        """(n_rays, 2) one planar lidar turn in the lidar's own frame; NaN where no return.

        Rays leave the lidar site in its x-y plane, the way a real 2D lidar measures.
        """
        m, d = self.scene.model, self.scene.data
        sid = self.scene.ids.lidar_site
        az = np.arange(n_rays) * (2 * np.pi / n_rays)
        local = np.stack([np.cos(az), np.sin(az), np.zeros(n_rays)], axis=1)
        world = local @ d.site_xmat[sid].reshape(3, 3).T
        geomid = np.zeros(n_rays, dtype=np.int32)
        dist = np.zeros(n_rays)
        self.mj.mj_multiRay(
            m,
            d,
            d.site_xpos[sid].copy(),
            world.reshape(-1),
            None,
            1,
            self.scene.ids.base_body,
            geomid,
            dist,
            None,
            n_rays,
            max_range_m,
        )
        hit = (dist >= 0) & (dist <= max_range_m)
        if self.noise.lidar_range_m:
            dist = dist + self.rng.normal(0.0, self.noise.lidar_range_m, n_rays)
        pts = local[:, :2] * dist[:, None]
        pts[~hit] = np.nan
        return pts

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
        self.scene.close()

    def __enter__(self) -> SimCalibrationRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ ground truth
    @property
    def truth(self) -> SimCalibrationRig:
        """What the procedures compare with (:class:`~mmrobot.calibrate.base.GroundTruth`)."""
        return self

    def true_ft_bias(self) -> np.ndarray:
        """(6,) the injected F/T bias."""
        return np.asarray(self.noise.ft_bias, dtype=np.float64)

    def true_payload(self) -> tuple[float, np.ndarray]:
        """Mass (kg) of everything the F/T sensor carries and its centre of mass (3,) in the
        sensor frame, at the current gripper opening."""
        return payload_truth(self.scene, self.frames)

    def true_intrinsics(self, camera: str = names.WRIST_CAMERA) -> np.ndarray:
        """(3, 3) the camera matrix of ``camera`` at :attr:`image_size` (OpenCV pixel centres)."""
        return intrinsics_truth(self.scene.model, camera, self.image_size)

    def true_camera_in_tcp(self, camera: str = names.WRIST_CAMERA) -> np.ndarray:
        """(4, 4) the camera's OpenCV frame in the TCP frame (what hand-eye calibration finds)."""
        return camera_in_tcp_truth(self.frames, self.scene.arm_qpos, camera)

    def true_lidar_pose(self) -> np.ndarray:
        """(4, 4) the lidar frame in the base frame."""
        d, ids = self.scene.data, self.scene.ids
        base = homogeneous(d.xmat[ids.base_body].reshape(3, 3), d.xpos[ids.base_body])
        site = homogeneous(d.site_xmat[ids.lidar_site].reshape(3, 3), d.site_xpos[ids.lidar_site])
        return np.linalg.inv(base) @ site


def payload_truth(scene: Any, frames: ArmFrames) -> tuple[float, np.ndarray]:
    """Mass (kg) of everything the F/T sensor of ``scene`` (an :class:`~mmrobot.envs.scene.Scene`)
    carries and its centre of mass (3,) in the sensor frame, in the scene's current state."""
    mj, m, d = scene.mujoco, scene.model, scene.data
    hand = scene.ids.hand_body
    pose = frames.ft_sensor(scene.arm_qpos)
    mj.mj_kinematics(m, d)
    mj.mj_comPos(m, d)
    com = pose[:3, :3].T @ (d.subtree_com[hand] - pose[:3, 3])
    return float(m.body_subtreemass[hand]), com


def intrinsics_truth(model: Any, camera: str, image_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) the camera matrix of MuJoCo camera ``camera`` rendered at ``(width, height)``
    (square pixels, principal point at the image centre in OpenCV's pixel-centre convention)."""
    from mmrobot.core.deps import require

    mj = require("mujoco", "the simulated cameras' ground truth")
    cid = mj.mj_name2id(model, mj.mjtObj.mjOBJ_CAMERA, camera)
    if cid < 0:
        raise LifecycleError(f"the scene has no camera {camera!r}")
    w, h = image_size
    fy = (h / 2) / np.tan(np.deg2rad(model.cam_fovy[cid]) / 2)
    return np.array([[fy, 0.0, w / 2 - 0.5], [0.0, fy, h / 2 - 0.5], [0.0, 0.0, 1.0]])


def camera_in_tcp_truth(frames: ArmFrames, q: np.ndarray, camera: str) -> np.ndarray:
    """(4, 4) the OpenCV frame of ``camera`` in the TCP frame, at joint angles ``q``."""
    return np.linalg.inv(frames.tcp(q)) @ frames.camera_cv(q, camera)
