"""The calibration rig over a rig file's own drivers: a real robot, or the HIL rig.

:class:`DeviceCalibrationRig` offers what a procedure asks of a rig
(:class:`~mmrobot.calibrate.base.CalibrationRig`) through the drivers a robot runs with, so
the bytes go through the real protocol code (pyserial on the Dynamixel bus, the FT 300 and
the RPLIDAR; OpenCV for the cameras):

- ``move_arm``: goal positions through the rig's Dynamixel ``[[actuator]]``, interpolated in
  joint space at ``max_speed_rad_s`` (a real arm is never sent a jump), the gripper held half
  open; it returns when the ``joints`` stream of the Dynamixel ``[[driver]]`` has been still
  for ``rest_s`` (within ``rest_tol_rad``) near the target.
- ``read_joints``: the mean of the joints stream over the last 0.1 s (the arm is at rest).
- ``read_wrench``: the next raw FT 300 frames. The driver is opened with its entry's
  ``bias`` zeroed, ``payload`` off and no tare: calibration measures the raw sensor.
- ``capture``: the camera driver's newest full-resolution frame (``latest_frame``), taken
  only after two frames have arrived since the arm came to rest.
- ``scan``: the next full lidar turn. The driver publishes base-frame points through the
  entry's ``extrinsics``; they are mapped back into the lidar's own frame with the same
  extrinsics, which is what the fit expects. Voxel and outlier filters are switched off.

The arm's kinematic model (poses, IK, the F/T sensor and camera frames) is an MJCF with the
element names of :mod:`mmrobot.envs.names` (default ``envs/tabletop.xml``), with the targets
added at their known poses (:func:`~mmrobot.calibrate.targets.build_calibration_scene`); no
physics is stepped on it. On a robot the board and the box must stand where those specs say.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.calibrate.kinematics import ArmFrames
from mmrobot.calibrate.targets import BoardSpec, CalibrationScene, LidarBoxSpec
from mmrobot.core.clock import MonotonicClock
from mmrobot.core.errors import ConfigError, DeviceTimeoutError, LifecycleError

__all__ = ["DeviceCalibrationRig", "HilGroundTruth", "hil_ground_truth"]


class DeviceCalibrationRig:
    """A :class:`~mmrobot.calibrate.base.ProcedureRig` over a rig file's drivers.

    Args:
        rig: the loaded rig file (:func:`mmrobot.drivers.rig.load_rig`).
        scene_dir: folder for the kinematic calibration scene's MJCF.
        arm: drive the arm (its Dynamixel driver and actuator); the lidar procedure needs none.
        ft: name of the FT 300 entry to read, or None.
        cameras: MuJoCo camera name (``wrist_cam``) -> camera entry name, for :meth:`capture`.
        lidar: name of the lidar entry to scan with, or None.
        kinematics: the arm's MJCF (default ``envs/tabletop.xml``).
        board, box: where the targets stand (defaults: :class:`BoardSpec`, :class:`LidarBoxSpec`).
        truth: ground truth to compare with (the HIL rig's :func:`hil_ground_truth`), or None.
        max_speed_rad_s: joint speed of the interpolated moves.
        rest_s, rest_tol_rad: the arm is at rest once its joints stayed within ``rest_tol_rad``
            for ``rest_s``.
        timeout_s: how long a move, a frame or a scan may take before it is an error.

    Raises:
        ConfigError: the rig lacks a Dynamixel arm (driver and actuator) or a named entry.
        DeviceNotConnectedError: a device is absent (the driver names the port and the fix).
    """

    def __init__(
        self,
        rig: Any,
        scene_dir: str | os.PathLike[str],
        *,
        arm: bool = True,
        ft: str | None = None,
        cameras: dict[str, str] | None = None,
        lidar: str | None = None,
        kinematics: str | os.PathLike[str] | None = None,
        board: BoardSpec | None = None,
        box: LidarBoxSpec | None = None,
        truth: Any = None,
        max_speed_rad_s: float = 0.6,
        rest_s: float = 0.3,
        rest_tol_rad: float = 0.004,
        timeout_s: float = 15.0,
    ) -> None:
        from mmrobot.calibrate.targets import build_calibration_scene
        from mmrobot.drivers.registry import get_actuator_class, get_driver_class
        from mmrobot.envs.scene import Scene

        if max_speed_rad_s <= 0:
            raise ConfigError(f"max_speed_rad_s must be positive, got {max_speed_rad_s}")
        self.rig_file = rig
        self.targets: CalibrationScene = build_calibration_scene(
            scene_dir, board=board, box=box, base_scene=kinematics
        )
        self.scene = Scene(self.targets.path)
        self.frames = ArmFrames(self.scene.model)
        self.truth = truth
        self.clock = MonotonicClock()
        self.max_speed_rad_s = max_speed_rad_s
        self.rest_s, self.rest_tol_rad, self.timeout_s = rest_s, rest_tol_rad, timeout_s
        self._range = self.scene.arm_range.copy()
        self._opened: list[Any] = []
        self._joints: Any = None
        self._actuator: Any = None
        self._start_q: np.ndarray | None = None
        self._moved = False
        self._gripper = 0.0
        self._ft: Any = None
        self._cameras: dict[str, Any] = {}
        self._lidar: Any = None
        src = rig.source

        def build(entry: Any, **update: Any) -> Any:
            return get_driver_class(entry.kind)(
                entry.model_copy(update=update), clock=self.clock, source=src
            )

        try:
            if arm:
                jd = [d for d in rig.drivers if d.kind == "dynamixel" and d.enabled]
                acts = [a for a in rig.actuators if a.kind == "dynamixel"]
                if len(jd) != 1 or len(acts) != 1:
                    raise ConfigError(
                        f"{src}: calibration moves the arm through one Dynamixel [[driver]] "
                        f"(joint readings) and one Dynamixel [[actuator]] (goals); found "
                        f"{len(jd)} and {len(acts)}"
                    )
                servos = acts[0].servos
                if len(servos) != 7 or servos[-1].min is None or servos[-1].max is None:
                    raise ConfigError(
                        f"{src}: actuator {acts[0].name!r} needs the 6 arm joint servos in the "
                        "arm model's order, then the gripper servo with `min` and `max`"
                    )
                for i, s in enumerate(servos[:6]):
                    lo = -np.inf if s.min is None else s.min
                    hi = np.inf if s.max is None else s.max
                    self._range[i] = (max(self._range[i, 0], lo), min(self._range[i, 1], hi))
                self._gripper = 0.5 * (float(servos[-1].min) + float(servos[-1].max))
                self._joints = build(jd[0])
                self._actuator = get_actuator_class("dynamixel")(
                    acts[0], clock=self.clock, source=src
                )
            if ft is not None:
                self._ft = build(rig.driver(ft), bias=(0.0,) * 6, payload=None, tare_on_open=False)
            for camera, name in (cameras or {}).items():
                self._cameras[camera] = build(rig.driver(name))
            if lidar is not None:
                self._lidar = build(rig.driver(lidar), voxel_size_m=None, outlier_neighbors=None)
            for dev in (self._joints, self._ft, *self._cameras.values(), self._lidar):
                if dev is not None:
                    dev.open()
                    self._opened.append(dev)
            if self._joints is not None:
                self._wait(lambda: self._joints.latest() is not None, "the joints stream")
                self._start_q = self.read_joints()
                self._actuator.open()  # torque on; the servos hold their present position
                self._opened.append(self._actuator)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ the rig interface
    @property
    def joint_range(self) -> np.ndarray:
        """(6, 2) the model's joint limits narrowed by the actuator's servo ``min``/``max``."""
        return self._range.copy()

    def move_arm(self, q: np.ndarray) -> None:
        """Move to joint angles (6,) at ``max_speed_rad_s`` and return once the arm is at rest.

        Raises:
            ConfigError: ``q`` is not 6 finite angles within :attr:`joint_range`.
            DeviceTimeoutError: the arm did not come to rest near ``q`` within ``timeout_s``.
        """
        if self._actuator is None:
            raise LifecycleError("this calibration rig was opened without the arm (arm=False)")
        q = np.asarray(q, dtype=np.float64)
        lo, hi = self._range.T
        if q.shape != (6,) or not np.isfinite(q).all() or (q < lo).any() or (q > hi).any():
            raise ConfigError(
                f"joint target {np.round(q, 4).tolist()} is not 6 finite angles within the "
                f"joint limits {np.round(self._range, 3).tolist()}"
            )
        q0 = self.read_joints()
        duration = max(float(np.abs(q - q0).max()) / self.max_speed_rad_s, 0.1)
        period = 0.02
        t0 = time.monotonic()
        while True:
            s = min((time.monotonic() - t0) / duration, 1.0)
            s = s * s * (3 - 2 * s)  # smoothstep: no jump in velocity at either end
            self._actuator.send(np.concatenate([q0 + s * (q - q0), [self._gripper]]))
            if s >= 1.0:
                break
            time.sleep(period)
        self._moved = True
        self._wait_rest(q)

    def _wait_rest(self, q: np.ndarray) -> None:
        buf = self._joints.buffers[self._joints.specs[0].name]
        window_ns = int(self.rest_s * 1e9)
        end = time.monotonic() + self.timeout_s
        while time.monotonic() < end:
            time.sleep(0.05)
            now = self.clock.now_ns()
            _, v = buf.window(now - window_ns, now)
            if len(v) < 5:
                continue
            v = v[:, :6].astype(np.float64)
            still = float(np.ptp(v, axis=0).max()) <= self.rest_tol_rad
            if still and float(np.abs(v[-1] - q).max()) < 0.05:
                return
        latest = self.read_joints()
        raise DeviceTimeoutError(
            f"the arm did not come to rest at {np.round(q, 3).tolist()} within "
            f"{self.timeout_s:g} s (at {np.round(latest, 3).tolist()}; joints driver "
            f"{self._joints.health.value}: {self._joints.stats.last_error or 'no error'}); check "
            "the servos' torque and load, or that nothing blocks the arm"
        )

    def read_joints(self) -> np.ndarray:
        """(6,) the mean arm joint angles of the last 0.1 s of the joints stream."""
        if self._joints is None:
            raise LifecycleError("this calibration rig was opened without the arm (arm=False)")
        buf = self._joints.buffers[self._joints.specs[0].name]
        now = self.clock.now_ns()
        _, v = buf.window(now - 100_000_000, now)
        if len(v) == 0:
            latest = buf.latest()
            if latest is None:
                raise DeviceTimeoutError("no joint reading yet from the Dynamixel driver")
            v = latest[1][None]
        return v[:, :6].astype(np.float64).mean(axis=0)

    def read_wrench(self, n_samples: int = 50) -> np.ndarray:
        """(n_samples, 6) the next raw FT 300 frames (no bias, no gravity compensation)."""
        if self._ft is None:
            raise LifecycleError("this calibration rig was opened without an F/T sensor (ft=)")
        buf = self._ft.buffers[self._ft.specs[0].name]
        start = buf.count
        self._wait(lambda: buf.count >= start + n_samples, f"{n_samples} F/T frames")
        _, v = buf.window(-(2**62), 2**62)
        return v[-n_samples:].astype(np.float64)

    def capture(self, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 RGB: the camera's newest full-resolution frame, two frames after
        the arm came to rest."""
        dev = self._cameras.get(camera)
        if dev is None:
            raise LifecycleError(
                f"no camera driver for {camera!r} (have {sorted(self._cameras)}); pass it in "
                "`cameras`"
            )
        start = dev.frames_read
        self._wait(lambda: dev.frames_read >= start + 2, f"two frames of {dev.name!r}")
        frame = dev.latest_frame()
        if frame is None:
            raise DeviceTimeoutError(f"camera {dev.name!r} delivered no frame")
        return frame

    def scan(self) -> np.ndarray:
        """(N, 2) the next full lidar turn in the lidar's own frame, metres; NaN where no return."""
        if self._lidar is None:
            raise LifecycleError("this calibration rig was opened without a lidar (lidar=)")
        buf = self._lidar.buffers[self._lidar.specs[0].name]
        start = buf.count
        # the first turn may have begun before this call: take the one after it
        self._wait(lambda: buf.count >= start + 2, f"two turns of {self._lidar.name!r}")
        latest = buf.latest()
        if latest is None:  # the buffer was cleared under us (a reconnect)
            raise DeviceTimeoutError(f"lidar {self._lidar.name!r} lost its scans")
        pts = latest[1].astype(np.float64)
        empty = ~np.any(pts != 0.0, axis=1)
        ex = self._lidar.config.extrinsics
        local = (pts - np.asarray(ex.translation_m)) @ ex.rotation()
        local[empty] = np.nan
        return local[:, :2]

    # ------------------------------------------------------------------ lifecycle
    def _wait(self, ready: Any, what: str) -> None:
        end = time.monotonic() + self.timeout_s
        while not ready():
            if time.monotonic() > end:
                health = ", ".join(
                    f"{d.name}: {d.health.value} {d.stats.last_error or ''}".strip()
                    for d in self._opened
                    if hasattr(d, "health")
                )
                raise DeviceTimeoutError(
                    f"waited {self.timeout_s:g} s for {what} from {self.rig_file.source} "
                    f"({health}); check the devices with `mmrobot rig {self.rig_file.source} --run 5`"
                )
            time.sleep(0.01)

    def close(self) -> None:
        """Move the arm back to where it started, then close the actuator (torque off where
        the rig file says so) and the drivers."""
        if self._moved and self._start_q is not None:
            with contextlib.suppress(Exception):
                self.move_arm(np.clip(self._start_q, *self._range.T))
        self._moved = False
        for dev in reversed(self._opened):
            with contextlib.suppress(Exception):
                dev.close()
        self._opened.clear()
        with contextlib.suppress(Exception):
            self.scene.close()

    def __enter__(self) -> DeviceCalibrationRig:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HilGroundTruth:
    """The HIL rig's ground truth (:class:`~mmrobot.calibrate.base.GroundTruth`), read from its
    ``/state`` (``calibration_truth``) at each call: the payload depends on the gripper."""

    def __init__(self, state_url: str) -> None:
        self.state_url = state_url

    def _get(self) -> dict[str, Any]:
        import json
        import urllib.request

        with urllib.request.urlopen(self.state_url, timeout=5.0) as r:
            return json.loads(r.read())["calibration_truth"]

    def true_ft_bias(self) -> np.ndarray:
        return np.asarray(self._get()["ft_bias"], dtype=np.float64)

    def true_payload(self) -> tuple[float, np.ndarray]:
        t = self._get()
        return float(t["payload_mass_kg"]), np.asarray(t["payload_com_m"], dtype=np.float64)

    def true_intrinsics(self, camera: str) -> np.ndarray:
        return np.asarray(self._get()["camera_matrix"][camera], dtype=np.float64)

    def true_camera_in_tcp(self, camera: str) -> np.ndarray:
        return np.asarray(self._get()["camera_in_tcp"][camera], dtype=np.float64)

    def true_lidar_pose(self) -> np.ndarray:
        return np.asarray(self._get()["lidar_pose"], dtype=np.float64)


def hil_ground_truth(rig_path: str | os.PathLike[str]) -> HilGroundTruth | None:
    """The ground truth of the HIL rig that wrote ``rig_path``, when it serves the calibration
    targets (``--calibration-targets``); None for any other rig file."""
    import json
    import urllib.error
    import urllib.request

    text = Path(rig_path).read_text(encoding="utf-8")
    m = re.search(r"^# state: (http://\S+)", text, re.MULTILINE)
    if m is None:
        return None
    try:
        with urllib.request.urlopen(m.group(1), timeout=5.0) as r:
            state = json.loads(r.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return HilGroundTruth(m.group(1)) if "calibration_truth" in state else None
