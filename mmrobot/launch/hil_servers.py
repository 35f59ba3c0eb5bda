"""Servers of the HIL rig (:mod:`mmrobot.launch.hil`): the simulated world, the emulator-backed
device servers, camera MJPEG streaming and the ``/state`` HTTP endpoint.

See :mod:`mmrobot.launch.hil` for how these make up the rig; :class:`~mmrobot.launch.hil.HilRig`
assembles and runs them.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import struct
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrobot.drivers.dynamixel import ServoConfig, ServoConversion
from mmrobot.drivers.emulators.dynamixel import DynamixelEmulator
from mmrobot.drivers.emulators.ft300 import FT300Emulator
from mmrobot.drivers.protocols.dynamixel import XAddr

if TYPE_CHECKING:
    from mmrobot.launch.hil import HilRig

__all__ = [
    "CameraFrames",
    "HttpServer",
    "SimDynamixelEmulator",
    "SimFT300Emulator",
    "SimLidarRoom",
    "SimWorld",
    "hil_servos",
    "make_http_handler",
]

_CAMERAS = ("scene_cam", "wrist_cam")


# --------------------------------------------------------------------------- the world


class SimWorld:
    """The MuJoCo tabletop stepped in real time, shared by every emulator under one lock.

    Args:
        task: task spec for the table layout (e.g. ``"pick color=red"``); None draws one.
        seed: layout seed.
        image_size: side of the camera streams in the rig file (the policy's camera shape).
        real_time_factor: simulated seconds per wall second.
        xml_path: serve this MJCF scene as it is, with no task layout (e.g. the calibration
            scene of :func:`mmrobot.calibrate.targets.build_calibration_scene`); the arm
            starts at its home pose with the gripper half open. None: the tabletop task env.
        camera_size: (width, height) of the rendered and served frames; None: ``image_size``
            square. A camera driver resizes frames to its stream shape, so larger frames
            change only what ``latest_frame()`` (calibration) sees.
    """

    def __init__(
        self,
        task: str | None = None,
        seed: int = 0,
        image_size: int = 96,
        real_time_factor: float = 1.0,
        *,
        xml_path: str | os.PathLike[str] | None = None,
        camera_size: tuple[int, int] | None = None,
    ) -> None:
        from mmrobot.envs import names

        self.names = names
        self.env: Any = None
        if xml_path is None:
            from mmrobot.envs.tabletop import EnvConfig, TabletopEnv

            self.env = TabletopEnv(EnvConfig(action_mode="joint"), render_mode=None)
            options = {"task": task} if task else None
            self.env.reset(seed=seed, options=options)
            self.task = self.env.task.format() if self.env.task else ""
            self.scene = self.env.scene
        else:
            from mmrobot.envs.scene import Scene

            if task:
                raise ValueError(
                    f"a scene file ({xml_path}) has no task layout; drop task={task!r}"
                )
            self.scene = Scene(xml_path)
            self.scene.reset_arm(self.scene.home_qpos, gripper_open=0.5)
            self.task = f"scene {Path(xml_path).name}"
        self.mj = self.scene.mujoco
        self.model, self.data = self.scene.model, self.scene.data
        self.ids = self.scene.ids
        self.image_size = image_size
        self.camera_size = camera_size or (image_size, image_size)
        self.real_time_factor = real_time_factor
        self.lock = threading.RLock()
        self.step_s = float(self.model.opt.timestep)
        self.torque = np.ones(7, dtype=bool)  # 6 arm joints + gripper
        self.sim_time_s = 0.0
        self.steps = 0
        self.slips = 0  # times the stepping fell behind real time and dropped the backlog
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wall_start = 0.0

    # -- physics ------------------------------------------------------------------------

    def start(self) -> SimWorld:
        self._stop.clear()
        self._wall_start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="hil-physics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self) -> None:
        max_batch = max(1, round(0.02 / self.step_s))  # at most 20 ms of physics per wake-up
        while not self._stop.is_set():
            target = (time.monotonic() - self._wall_start) * self.real_time_factor
            behind = int((target - self.sim_time_s) / self.step_s)
            if behind > 5 * max_batch:  # the machine cannot keep up: slip, never burst
                self.slips += 1
                self._wall_start += (behind - max_batch) * self.step_s / self.real_time_factor
                behind = max_batch
            for _ in range(min(behind, max_batch)):
                with self.lock:
                    self._limp()
                    self.mj.mj_step(self.model, self.data)
                    self.sim_time_s += self.step_s
                    self.steps += 1
            self._stop.wait(0.001)

    def _limp(self) -> None:
        """Joints without torque track themselves: no stiffness, only damping (a limp arm)."""
        if self.torque[:6].all() and self.torque[6]:
            return
        ids = self.ids
        off = ~self.torque[:6]
        if off.any():
            self.data.ctrl[ids.arm_act[off]] = self.data.qpos[ids.arm_qpos[off]]
        if not self.torque[6]:
            self.data.ctrl[ids.gripper_act] = 0.5 * float(self.data.qpos[ids.finger_qpos].sum())

    # -- what the devices touch ---------------------------------------------------------

    def servo_exchange(
        self, targets: np.ndarray, gripper_frac: float, torque: np.ndarray
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """Apply joint targets (6,) rad and a gripper command in [0, 1] (where torque is on);
        return the arm angles (6,) rad, the gripper opening fraction of its full travel and
        the arm joint velocities (6,) rad/s."""
        with self.lock:
            self.torque[:] = torque
            if torque[:6].any():
                q = self.data.ctrl[self.ids.arm_act].copy()
                q[torque[:6]] = np.asarray(targets, np.float64)[torque[:6]]
                self.scene.command_joints(q)
            if torque[6]:
                self.scene.command_gripper(gripper_frac)
            self._limp()
            q = self.data.qpos[self.ids.arm_qpos].copy()
            qd = self.data.qvel[self.ids.arm_dof].copy()
            opening = float(self.data.qpos[self.ids.finger_qpos].sum())
        return q, opening / self.names.GRIPPER_MAX_OPENING_M, qd

    def wrench(self) -> np.ndarray:
        """(6,) the wrist sensor's [fx, fy, fz (N), tx, ty, tz (N*m)], sensor frame."""
        with self.lock:
            s = self.data.sensordata
            f, t = self.ids.ft_force_adr, self.ids.ft_torque_adr
            return np.concatenate([s[f : f + 3], s[t : t + 3]]).astype(np.float64)

    def lidar_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The lidar site's position (3,) and rotation (3, 3) in the base frame."""
        with self.lock:
            self.mj.mj_kinematics(self.model, self.data)
            ids = self.ids
            base_r = self.data.xmat[ids.base_body].reshape(3, 3)
            p = (self.data.site_xpos[ids.lidar_site] - self.data.xpos[ids.base_body]) @ base_r
            r = base_r.T @ self.data.site_xmat[ids.lidar_site].reshape(3, 3)
            return p.copy(), r.copy()

    def cast(self, angle_ccw_rad: np.ndarray, max_range_m: float) -> np.ndarray:
        """(M,) ranges along horizontal rays at counter-clockwise angles from the lidar's x
        axis; ``inf`` where nothing is hit within ``max_range_m``."""
        a = np.asarray(angle_ccw_rad, np.float64).reshape(-1)
        n = a.size
        if n == 0:
            return np.zeros(0)
        geomid = np.zeros(n, dtype=np.int32)
        dist = np.zeros(n, dtype=np.float64)
        with self.lock:
            d, ids = self.data, self.ids
            r = d.site_xmat[ids.lidar_site].reshape(3, 3)
            local = np.stack([np.cos(a), np.sin(a), np.zeros(n)], axis=1)
            vec = local @ r.T
            origin = d.site_xpos[ids.lidar_site].copy()
            self.mj.mj_multiRay(
                self.model,
                d,
                origin,
                vec.reshape(-1),
                None,
                1,
                ids.base_body,
                geomid,
                dist,
                None,
                n,
                max_range_m,
            )
        return np.where((dist >= 0) & (dist <= max_range_m), dist, np.inf)

    def state(self) -> dict[str, Any]:
        """Ground truth as plain data: time, joints, opening, TCP pose, commands."""
        with self.lock:
            pos, mat = self.scene.tcp_pose()
            return {
                "task": self.task,
                "sim_time_s": self.sim_time_s,
                "wall_time_s": time.monotonic() - self._wall_start if self._wall_start else 0.0,
                "steps": self.steps,
                "slips": self.slips,
                "arm_qpos_rad": self.data.qpos[self.ids.arm_qpos].tolist(),
                "arm_ctrl_rad": self.data.ctrl[self.ids.arm_act].tolist(),
                "gripper_opening_m": float(self.data.qpos[self.ids.finger_qpos].sum()),
                "tcp_pos_m": pos.tolist(),
                "tcp_mat": mat.reshape(-1).tolist(),
                "torque": self.torque.tolist(),
                "wrench": self.wrench().tolist(),
            }

    def close(self) -> None:
        self.stop()
        if self.env is not None:
            self.env.close()
        else:
            self.scene.close()


# --------------------------------------------------------------------------- the devices


def hil_servos(arm_range_rad: np.ndarray) -> tuple[ServoConfig, ...]:
    """Servo entries of the HIL arm: 6 XM430-W350 joints (ids 1-6) at the simulated joint
    limits (kept inside the servo's +-pi) and an XM430-W350 gripper (id 7) reporting the
    opening between the pads in metres (0..0.08), as the simulation and the default
    observation spec do."""
    joints = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_roll", "wrist_pitch", "tool_roll")
    out = [
        ServoConfig(
            id=i + 1,
            model="XM430-W350",
            joint=j,
            min=round(max(float(arm_range_rad[i, 0]), -3.1), 4),
            max=round(min(float(arm_range_rad[i, 1]), 3.1), 4),
        )
        for i, j in enumerate(joints)
    ]
    gripper = ServoConfig(
        id=7, model="XM430-W350", joint="gripper", unit="m", m_per_rad=0.0255, min=0.0, max=0.08
    )
    out.append(gripper)
    return tuple(out)


class SimDynamixelEmulator(DynamixelEmulator):
    """The Dynamixel bus emulator with the simulated arm as its servos' physics.

    Servos 1..6 are the arm joints in order, the last servo is the gripper. Each request and
    each 5 ms tick: goal positions (ticks) -> joint units through the rig's calibration ->
    simulation targets; simulated angles -> present position/velocity registers.

    Args:
        world: the simulation.
        servos: the rig's servo entries, arm joints first, gripper last (with min/max).
        **kwargs: :class:`~mmrobot.drivers.emulators.PtyEmulator` options.
    """

    def __init__(self, world: SimWorld, servos: tuple[ServoConfig, ...], **kwargs: Any) -> None:
        super().__init__([(s.id, s.model) for s in servos], **kwargs)
        if len(servos) != 7 or servos[-1].min is None or servos[-1].max is None:
            raise ValueError("the HIL arm needs 6 joint servos and a gripper servo with min/max")
        self.world = world
        self.conv = ServoConversion(servos)
        self._order = [s.id for s in servos]
        self._g_lo, self._g_hi = float(servos[-1].min), float(servos[-1].max)
        q, frac, _ = world.servo_exchange(np.zeros(6), 1.0, np.zeros(7, dtype=bool))
        ticks = self._ticks(q, frac)
        for i, t in zip(self._order, ticks, strict=True):
            s = self.servos[i]
            s.position = float(t)
            # a servo powers up with its goal at its present position
            struct.pack_into("<i", s.table, XAddr.GOAL_POSITION, int(round(t)))
        world.torque[:] = False

    def _ticks(self, q: np.ndarray, gripper_frac: float) -> np.ndarray:
        """Continuous ticks of joint angles (6,) and a gripper fraction (inverse of to_joint)."""
        c = self.conv
        values = np.concatenate([q, [self._g_lo + gripper_frac * (self._g_hi - self._g_lo)]])
        angle = values / c.scale
        return (angle - c.offset) / (c.sign * c.rad_per_tick) + c.center

    def _advance(self) -> None:
        now = time.monotonic()
        tick_ms = int((now - self._start) * 1000.0)
        servos = [self.servos[i] for i in self._order]
        goals = np.array([s.i32(XAddr.GOAL_POSITION) for s in servos], dtype=np.float64)
        torque = np.array([s.torque_on for s in servos], dtype=bool)
        values = self.conv.to_joint(goals)
        span = self._g_hi - self._g_lo
        frac = float(np.clip((values[6] - self._g_lo) / span, 0.0, 1.0))
        q, g_frac, qd = self.world.servo_exchange(values[:6], frac, torque)
        ticks = self._ticks(q, g_frac)
        tick_vel = np.concatenate([qd / (self.conv.sign[:6] * self.conv.rad_per_tick[:6]), [0.0]])
        self._last_step = now
        for s, t, v in zip(servos, ticks, tick_vel, strict=True):
            s.position = float(t)
            s.velocity = float(v)
            s._publish(tick_ms)


class SimFT300Emulator(FT300Emulator):
    """The FT 300 emulator streaming the simulated wrist wrench (plus its noise model).

    Args:
        world: the simulation.
        bias: (6,) constant offset added to the wrench, as a real sensor's zero drifts.
        **kwargs: :class:`~mmrobot.drivers.emulators.FT300Emulator` options (noise).
    """

    def __init__(
        self, world: SimWorld, bias: tuple[float, ...] = (0.0,) * 6, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.world = world
        self.bias = np.asarray(bias, dtype=np.float64)
        if self.bias.shape != (6,):
            raise ValueError(f"bias must have 6 values, got {bias!r}")

    @property
    def wrench(self) -> np.ndarray:
        return self.world.wrench() + self.bias


class SimLidarRoom:
    """The lidar emulator's "room": ranges ray cast in the simulated scene.

    Args:
        world: the simulation.
        max_range_m: rays that hit nothing within this range return ``inf`` (no return).
    """

    def __init__(self, world: SimWorld, max_range_m: float = 12.0) -> None:
        self.world = world
        self.max_range_m = max_range_m

    def ranges(self, angle_ccw_rad: np.ndarray) -> np.ndarray:
        """(M,) distances along (M,) counter-clockwise angles from the lidar's x axis."""
        return self.world.cast(angle_ccw_rad, self.max_range_m)


# --------------------------------------------------------------------------- cameras


class CameraFrames:
    """Latest JPEG of each camera, rendered by one thread (GL contexts are per thread)."""

    def __init__(self, world: SimWorld, rate_hz: float = 30.0, quality: int = 90) -> None:
        self.world = world
        self.period_s = 1.0 / rate_hz
        self.quality = quality
        self.jpeg: dict[str, bytes] = {}
        self.seq = 0
        self.cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hil-cameras", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def wait_first(self, timeout_s: float) -> bool:
        """Block until the first frames are out (or rendering failed); False on timeout.
        Creating the GL context and the first render take the interpreter for a while, so
        the rig waits for them before its serial devices go live."""
        with self.cond:
            return self.cond.wait_for(
                lambda: self.seq > 0 or self.error is not None or self._thread is None
                or not self._thread.is_alive(),
                timeout=timeout_s,
            )  # fmt: skip

    def _run(self) -> None:
        import cv2

        w, h = self.world.camera_size
        try:
            renderer = self.world.scene.renderer(h, w)
        except Exception as e:  # no GL: say so on /state, serve no frames
            with self.cond:
                self.error = f"{type(e).__name__}: {e}"
                self.cond.notify_all()
            return
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                out = {}
                for cam in _CAMERAS:
                    with self.world.lock:
                        renderer.update_scene(self.world.data, camera=cam)
                    rgb = renderer.render()
                    ok, buf = cv2.imencode(
                        ".jpg",
                        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, self.quality],
                    )
                    if ok:
                        out[cam] = buf.tobytes()
                with self.cond:
                    self.jpeg.update(out)
                    self.seq += 1
                    self.cond.notify_all()
                next_t = max(next_t + self.period_s, time.monotonic() - self.period_s)
                self._stop.wait(max(0.0, next_t - time.monotonic()))
        finally:
            renderer.close()


def make_http_handler(rig: HilRig) -> type[http.server.BaseHTTPRequestHandler]:
    """The HTTP handler of ``rig``: camera MJPEG streams and the ``/state`` JSON."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?")[0].strip("/")
            if path == "state":
                body = json.dumps(rig.state()).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            cam = path.removesuffix(".mjpg")
            if cam not in _CAMERAS:
                self.send_error(404, f"no such stream; have /state and {list(_CAMERAS)}.mjpg")
                return
            self.send_response(200)
            self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
            self.end_headers()
            frames, seq = rig.frames, -1
            try:
                while not rig.stopping.is_set():
                    with frames.cond:
                        frames.cond.wait_for(
                            lambda last=seq: frames.seq != last or rig.stopping.is_set(),
                            timeout=1.0,
                        )
                        seq, jpg = frames.seq, frames.jpeg.get(cam)
                    if jpg is None:
                        continue
                    self.wfile.write(
                        b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpg)).encode()
                        + b"\r\n\r\n"
                        + jpg
                        + b"\r\n"
                    )
            except (BrokenPipeError, ConnectionResetError):
                return

    return Handler


class HttpServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A threaded HTTP server whose threads do not keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True
