"""Simulated sensors as drivers: samples into StreamBuffers on the simulation clock.

Each :class:`SimDriver` measures its stream from the MuJoCo state when a sample is due
(its own rate; a camera renders only then), adds the configured bias and noise, drops it
with the configured probability, and delivers it to its :class:`~mmrobot.sync.StreamBuffer`
only after the configured latency has passed on the simulation clock. The stamp is what a
real rig computes: the arrival time minus the stream's declared latency (``spec.latency_ns``).
So the environment's observation, ``Synchronizer.observe(t)``, carries ages and validity
exactly as on hardware, and a policy never sees a measurement before it could have arrived.

Streams (the project's default observation spec, :func:`default_stream_specs`):
``scene_cam``/``wrist_cam`` (96, 96, 3) uint8 at 30 Hz, ``lidar`` (360, 3) float32 points in
the base frame at 10 Hz, ``ft`` (6,) float32 wrench at 100 Hz (the Robotiq FT 300's rate),
``joints`` (7,) float32 (six arm angles + gripper opening) at 200 Hz, ``ee_pose`` (9,) float32
(TCP position and the first two columns of its rotation matrix, forward kinematics of each
``joints`` reading, see :class:`EePoseDriver`); optional ``<camera>_depth`` (H, W) float32
metres and ``joint_vel`` (6,) float32 rad/s.

The streams' configuration (:class:`SensorConfig`, :class:`SensorSuiteConfig`, the default
spec) is in :mod:`mmrobot.envs.sensor_config` and importable from here.
"""

from __future__ import annotations

import heapq
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrobot.core.types import StreamSpec
from mmrobot.envs import names
from mmrobot.envs.sensor_config import (
    DERIVED_STREAMS,
    OPTIONAL_STREAM_NAMES,
    STREAM_NAMES,
    SensorConfig,
    SensorSuiteConfig,
    default_stream_specs,
)

if TYPE_CHECKING:
    from mmrobot.envs.scene import Scene
    from mmrobot.sync import StreamBuffer

__all__ = [
    "DERIVED_STREAMS",
    "OPTIONAL_STREAM_NAMES",
    "STREAM_NAMES",
    "CameraDriver",
    "DepthDriver",
    "EePoseDriver",
    "ForceTorqueDriver",
    "JointVelocityDriver",
    "JointsDriver",
    "LidarDriver",
    "SensorConfig",
    "SensorSuiteConfig",
    "SimDriver",
    "default_stream_specs",
]


class SimDriver(ABC):
    """One simulated stream: measure when due, corrupt, delay, deliver.

    Args:
        spec: the stream's spec (shape, dtype, rate, declared latency).
        buffer: where samples go.
        config: the stream's timing and error model.
        rng: the episode's random generator (noise, dropout, jitter).
    """

    def __init__(
        self, spec: StreamSpec, buffer: StreamBuffer, config: SensorConfig, rng: np.random.Generator
    ) -> None:
        self.spec = spec
        self.buffer = buffer
        self.config = config
        self.rng = rng
        self.period_ns = spec.period_ns
        self.latency_ns = int(config.latency_ns)  # actual latency (randomization may change it)
        self._bias = np.asarray(config.bias, dtype=np.float64)
        self._pending: list[tuple[int, int, int, np.ndarray]] = []  # (arrival, seq, stamp, value)
        self._seq = 0
        self.next_due_ns = 0
        self.measured = 0
        self.dropped = 0
        #: streams computed from this one's readings (e.g. ``ee_pose`` from ``joints``)
        self.followers: list[EePoseDriver] = []

    def reset(self, rng: np.random.Generator, t_ns: int = 0) -> None:
        """Forget pending samples and restart the schedule at ``t_ns``."""
        self.rng = rng
        self._pending.clear()
        self.next_due_ns = t_ns
        self.buffer.clear()

    @abstractmethod
    def measure(self, scene: Scene) -> np.ndarray:
        """The ideal measurement from the current MuJoCo state (spec shape)."""

    def corrupt(self, value: np.ndarray) -> np.ndarray:
        """Add bias and Gaussian noise (in float), cast back to the stream's dtype."""
        std = self.config.noise_std
        if std == 0.0 and not self._bias.any():
            return value
        out = value.astype(np.float64) + self._bias
        if std > 0.0:
            out += self.rng.normal(0.0, std, size=out.shape)
        if self.spec.dtype == "uint8":
            out = np.clip(np.rint(out), 0, 255)
        return out.astype(self.spec.dtype)

    def poll(self, scene: Scene, t_ns: int) -> None:
        """Called after each physics step at simulation time ``t_ns``."""
        if t_ns >= self.next_due_ns:
            # the first physics step at or after the due time takes the measurement
            self.next_due_ns += self.period_ns * (1 + (t_ns - self.next_due_ns) // self.period_ns)
            cfg = self.config
            if cfg.dropout > 0.0 and self.rng.random() < cfg.dropout:
                self.dropped += 1
            else:
                value = self.corrupt(self.measure(scene))
                self.measured += 1
                delay = self.latency_ns
                if cfg.latency_jitter_ns:
                    delay += int(self.rng.integers(0, cfg.latency_jitter_ns + 1))
                if delay == 0:
                    self._deliver(scene, t_ns, value)
                else:
                    self._seq += 1
                    heapq.heappush(self._pending, (t_ns + delay, self._seq, t_ns, value))
        pending = self._pending
        while pending and pending[0][0] <= t_ns:
            arrival, _, _, value = heapq.heappop(pending)
            # what a calibrated rig stamps: arrival minus the declared latency
            self._deliver(scene, arrival - self.spec.latency_ns, value)

    def _deliver(self, scene: Scene, stamp_ns: int, value: np.ndarray) -> None:
        """Push one arrived sample, then hand it to the streams derived from it."""
        self.buffer.push(stamp_ns, value)
        for f in self.followers:
            f.receive(scene, stamp_ns, value)


class CameraDriver(SimDriver):
    """RGB camera; renders only when a sample is due (the renderer is made lazily)."""

    def __init__(self, camera: str, *args: Any) -> None:
        super().__init__(*args)
        self.camera = camera
        self._renderer: Any = None

    def _get_renderer(self, scene: Scene) -> Any:
        if self._renderer is None:
            h, w = self.spec.shape[:2]
            self._renderer = scene.shared_renderer(h, w, depth=False)
        return self._renderer

    def measure(self, scene: Scene) -> np.ndarray:
        r = self._get_renderer(scene)
        r.update_scene(scene.data, camera=self.camera)
        return r.render()

    def close(self) -> None:
        self._renderer = None


class DepthDriver(CameraDriver):
    """Depth image (metres along the optical axis) of a camera."""

    def _get_renderer(self, scene: Scene) -> Any:
        if self._renderer is None:
            h, w = self.spec.shape[:2]
            self._renderer = scene.shared_renderer(h, w, depth=True)
        return self._renderer


class LidarDriver(SimDriver):
    """Ray-casting lidar (``mj_multiRay``) at the base's lidar site.

    Args:
        directions: (N, 3) unit ray directions in the base frame.
        range_m: maximum range; no return gives (0, 0, 0).
    """

    def __init__(self, directions: np.ndarray, range_m: float, *args: Any) -> None:
        super().__init__(*args)
        self.directions = np.ascontiguousarray(directions, dtype=np.float64)
        self.range_m = float(range_m)
        n = len(self.directions)
        self._geomid = np.zeros(n, dtype=np.int32)
        self._dist = np.zeros(n, dtype=np.float64)

    @staticmethod
    def planar_directions(n_rays: int) -> np.ndarray:
        az = np.arange(n_rays) * (2 * np.pi / n_rays)
        return np.stack([np.cos(az), np.sin(az), np.zeros(n_rays)], axis=1)

    @staticmethod
    def pattern_3d(n_rays: int, n_rings: int, fov_deg: float = 30.0) -> np.ndarray:
        el = np.deg2rad(np.linspace(-fov_deg / 2, fov_deg / 2, n_rings))
        az = np.arange(n_rays) * (2 * np.pi / n_rays)
        e, a = np.meshgrid(el, az, indexing="ij")
        return np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], -1).reshape(
            -1, 3
        )

    def measure(self, scene: Scene) -> np.ndarray:
        return self.cast(scene, noise_std=0.0)

    def corrupt(self, value: np.ndarray) -> np.ndarray:
        return value  # range noise is applied inside cast()

    def cast(self, scene: Scene, noise_std: float | None = None) -> np.ndarray:
        """(N, 3) float32 points in the base frame; (0, 0, 0) where a ray has no return."""
        mj = scene.mujoco
        d = scene.data
        ids = scene.ids
        base_r = d.xmat[ids.base_body].reshape(3, 3)
        origin = d.site_xpos[ids.lidar_site]
        vec = self.directions @ base_r.T
        mj.mj_multiRay(
            scene.model,
            d,
            origin,
            vec.reshape(-1),
            None,
            1,
            ids.base_body,
            self._geomid,
            self._dist,
            None,
            len(vec),
            self.range_m,
        )
        dist = self._dist.copy()
        hit = (dist >= 0) & (dist <= self.range_m)
        std = self.config.noise_std if noise_std is None else noise_std
        if std > 0:
            dist = dist + self.rng.normal(0.0, std, size=dist.shape)
        origin_base = (origin - d.xpos[ids.base_body]) @ base_r
        pts = origin_base + self.directions * dist[:, None]
        pts[~hit] = 0.0
        if self._bias.any():
            pts[hit] += self._bias
        return pts.astype(np.float32)


class ForceTorqueDriver(SimDriver):
    """Wrist force/torque sensor: [fx, fy, fz (N), tx, ty, tz (N m)] in the sensor frame."""

    def measure(self, scene: Scene) -> np.ndarray:
        s = scene.data.sensordata
        f, t = scene.ids.ft_force_adr, scene.ids.ft_torque_adr
        return np.concatenate([s[f : f + 3], s[t : t + 3]]).astype(np.float32)


class JointsDriver(SimDriver):
    """Six arm joint angles (rad) and the gripper opening (m)."""

    def measure(self, scene: Scene) -> np.ndarray:
        out = np.empty(7, dtype=np.float32)
        out[:6] = scene.data.qpos[scene.ids.arm_qpos]
        out[6] = scene.data.qpos[scene.ids.finger_qpos].sum()
        return out


class EePoseDriver(SimDriver):
    """End-effector pose from forward kinematics of each ``joints`` reading.

    It measures nothing itself: every sample the joints driver delivers (with that sensor's
    noise, bias and latency, at its rate) is turned into ``(9,)`` float32 by
    :meth:`ArmKinematics.ee_pose_vector <mmrobot.envs.kinematics.ArmKinematics.ee_pose_vector>`
    and pushed with the same stamp, exactly as a real rig computes it from its encoders.
    Its own config adds dropout (and, if set, noise/bias on the pose); its timing is the
    joints stream's.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._kin: Any = None

    def _kinematics(self, scene: Scene) -> Any:
        if self._kin is None or self._kin.model is not scene.model:
            from mmrobot.envs.kinematics import ArmKinematics

            self._kin = ArmKinematics(scene.model)
        return self._kin

    def poll(self, scene: Scene, t_ns: int) -> None:
        """Nothing to do: samples come from :meth:`receive`."""

    def measure(self, scene: Scene) -> np.ndarray:
        """The pose from the true joint angles (no sensor noise)."""
        return self._kinematics(scene).ee_pose_vector(scene.data.qpos[scene.ids.arm_qpos])

    def receive(self, scene: Scene, stamp_ns: int, joints: np.ndarray) -> None:
        """One ``joints`` reading (7,) arrived with stamp ``stamp_ns``."""
        if self.config.dropout > 0.0 and self.rng.random() < self.config.dropout:
            self.dropped += 1
            return
        self.measured += 1
        q = joints[:6]
        if not np.isfinite(q).all():  # a blown-up state: the buffer rejects and counts it
            value = np.full(self.spec.shape, np.nan, dtype=np.float32)
        else:
            value = self.corrupt(self._kinematics(scene).ee_pose_vector(q))
        self._deliver(scene, stamp_ns, value)


class JointVelocityDriver(SimDriver):
    """Six arm joint velocities (rad/s)."""

    def measure(self, scene: Scene) -> np.ndarray:
        return scene.data.qvel[scene.ids.arm_dof].astype(np.float32)


def build_drivers(
    suite: SensorSuiteConfig, buffers: Mapping[str, StreamBuffer], rng: np.random.Generator
) -> list[SimDriver]:
    """One driver per enabled stream of ``suite``, writing to ``buffers[name]``."""
    drivers: list[SimDriver] = []
    for spec in suite.stream_specs():
        name = spec.name
        args = (spec, buffers[name], suite.config(name), rng)
        if name in ("scene_cam", "wrist_cam"):
            cam = names.SCENE_CAMERA if name == "scene_cam" else names.WRIST_CAMERA
            drivers.append(CameraDriver(cam, *args))
        elif name.endswith("_depth"):
            cam = names.SCENE_CAMERA if name.startswith("scene") else names.WRIST_CAMERA
            drivers.append(DepthDriver(cam, *args))
        elif name == "lidar":
            dirs = (
                LidarDriver.pattern_3d(suite.lidar_rays, suite.lidar_rings)
                if suite.lidar_3d
                else LidarDriver.planar_directions(suite.lidar_rays)
            )
            drivers.append(LidarDriver(dirs, suite.lidar_range_m, *args))
        elif name == "ft":
            drivers.append(ForceTorqueDriver(*args))
        elif name == "joints":
            drivers.append(JointsDriver(*args))
        elif name == "ee_pose":
            drivers.append(EePoseDriver(*args))
        elif name == "joint_vel":
            drivers.append(JointVelocityDriver(*args))
    by_name = {d.spec.name: d for d in drivers}
    for name, source in DERIVED_STREAMS.items():
        if name in by_name:
            by_name[source].followers.append(by_name[name])  # type: ignore[arg-type]
    return drivers
