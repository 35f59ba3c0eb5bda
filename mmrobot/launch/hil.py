"""Hardware in the loop: the real driver stack against the simulated world.

One process (:class:`HilRig`, ``python -m mmrobot.launch.hil``) steps the MuJoCo tabletop in
real time and serves, on pseudo-terminals and one local HTTP port, the devices of a real rig
with the simulation as their physical model:

- a Dynamixel Protocol 2.0 bus (:class:`SimDynamixelEmulator`, the drivers package's
  emulator with its servo dynamics replaced): goal positions written over the wire become the
  simulated arm's joint targets (``Scene.command_joints``) and present positions read over
  the wire are the simulated joint angles, converted with the servo calibration of the rig
  file (``sign``, ``offset_rad``, ``m_per_rad``) exactly as the driver converts back;
- a Robotiq FT 300 (:class:`SimFT300Emulator`) streaming the simulated wrist wrench;
- an RPLIDAR A1 (the drivers package's emulator) whose "room" is :class:`SimLidarRoom`,
  ray casts (``mj_multiRay``) from the simulated lidar site;
- the two cameras as MJPEG-over-HTTP streams (``multipart/x-mixed-replace``, what IP cameras
  and ``mjpg-streamer`` serve) of frames rendered from the simulated cameras; the unchanged
  OpenCV camera driver reads them through its URL path (FFmpeg). JPEG coding (quality 90)
  is the one thing in the loop a USB camera would not add.

It writes the rig file for these ports (``<dir>/rig.toml``), so ``launch/hil.toml`` (whose
``[rig] file`` points there) runs the policy through :class:`~mmrobot.launch.robot.RobotSession`
as on the real robot; ``launch/robot_example.toml`` is the same launch file for real ports.
``GET /state`` on the HTTP port returns the simulation's ground truth as JSON (tests and
benchmarks compare what came over the wire with it).

Gripper: the rig's gripper servo range ``[min, max]`` maps linearly onto the simulated
gripper command ``[0 closed, 1 open]``, and the simulated opening ``[0, 0.08] m`` back onto
the same range. Torque off: the simulated joint servos track their own measured position
each step (zero stiffness, the actuator damping remains), so the arm sags as a limp arm does.
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import math
import os
import socketserver
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.drivers.dynamixel import ServoConfig, ServoConversion
from mmrobot.drivers.emulators.dynamixel import DynamixelEmulator
from mmrobot.drivers.emulators.ft300 import FT300Emulator
from mmrobot.drivers.emulators.rplidar import RplidarEmulator
from mmrobot.drivers.protocols.dynamixel import XAddr

__all__ = [
    "DEFAULT_HIL_DIR",
    "HilRig",
    "SimDynamixelEmulator",
    "SimFT300Emulator",
    "SimLidarRoom",
    "SimWorld",
    "hil_servos",
    "main",
]

DEFAULT_HIL_DIR = Path("/tmp/mmrobot-hil")
_CAMERAS = ("scene_cam", "wrist_cam")


# --------------------------------------------------------------------------- the world


class SimWorld:
    """The MuJoCo tabletop stepped in real time, shared by every emulator under one lock.

    Args:
        task: task spec for the table layout (e.g. ``"pick color=red"``); None draws one.
        seed: layout seed.
        image_size: side of the rendered camera frames (pixels).
        real_time_factor: simulated seconds per wall second.
    """

    def __init__(
        self,
        task: str | None = None,
        seed: int = 0,
        image_size: int = 96,
        real_time_factor: float = 1.0,
    ) -> None:
        from mmrobot.envs import names
        from mmrobot.envs.tabletop import EnvConfig, TabletopEnv

        self.names = names
        self.env = TabletopEnv(EnvConfig(action_mode="joint"), render_mode=None)
        options = {"task": task} if task else None
        self.env.reset(seed=seed, options=options)
        self.task = self.env.task.format() if self.env.task else ""
        self.scene = self.env.scene
        self.mj = self.scene.mujoco
        self.model, self.data = self.scene.model, self.scene.data
        self.ids = self.scene.ids
        self.image_size = image_size
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
        self.env.close()


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
    """The FT 300 emulator streaming the simulated wrist wrench (plus its noise model)."""

    def __init__(self, world: SimWorld, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.world = world

    @property
    def wrench(self) -> np.ndarray:
        return self.world.wrench()


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


class _Frames:
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

    def _run(self) -> None:
        import cv2

        n = self.world.image_size
        try:
            renderer = self.world.scene.renderer(n, n)
        except Exception as e:  # no GL: say so on /state, serve no frames
            self.error = f"{type(e).__name__}: {e}"
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


def _make_handler(rig: HilRig) -> type[http.server.BaseHTTPRequestHandler]:
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


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


# --------------------------------------------------------------------------- the rig


class HilRig:
    """The simulated world and every device of the HIL rig, served from this process.

    Args:
        directory: where the port links (``dynamixel``, ``ft300``, ``rplidar``) and
            ``rig.toml`` go.
        task: table layout task spec; None draws one.
        seed: layout seed.
        http_port: camera/state HTTP port (0: a free one).
        image_size: rendered frame side (the policy's camera shape).
        cameras: serve the cameras (rendering costs CPU; tests of the arm can skip it).
        real_time_factor: simulated seconds per wall second.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] = DEFAULT_HIL_DIR,
        *,
        task: str | None = None,
        seed: int = 0,
        http_port: int = 0,
        image_size: int = 96,
        cameras: bool = True,
        real_time_factor: float = 1.0,
    ) -> None:
        self.dir = Path(directory)
        self.world = SimWorld(task, seed, image_size, real_time_factor)
        self.servos = hil_servos(self.world.scene.arm_range)
        self.cameras = cameras
        self.http_port = http_port
        self.stopping = threading.Event()
        self.frames = _Frames(self.world)
        self.arm = SimDynamixelEmulator(self.world, self.servos, link=self.dir / "dynamixel")
        self.ft = SimFT300Emulator(self.world, link=self.dir / "ft300")
        self.lidar = RplidarEmulator(SimLidarRoom(self.world), link=self.dir / "rplidar")
        self._server: _Server | None = None
        self.rig_path = self.dir / "rig.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> HilRig:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.world.start()
        self._server = _Server(("127.0.0.1", self.http_port), _make_handler(self))
        self.http_port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="hil-http", daemon=True).start()
        if self.cameras:
            self.frames.start()
        for emu in (self.arm, self.ft, self.lidar):
            emu.start()
        tmp = self.rig_path.with_suffix(".tmp")
        tmp.write_text(self.rig_text(), encoding="utf-8")
        os.replace(tmp, self.rig_path)  # appears whole: a waiting client never reads half
        return self

    def stop(self) -> None:
        self.stopping.set()
        with contextlib.suppress(FileNotFoundError):
            self.rig_path.unlink()
        for emu in (self.lidar, self.ft, self.arm):
            emu.stop()
        self.frames.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.world.close()

    def __enter__(self) -> HilRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def state(self) -> dict[str, Any]:
        out = self.world.state()
        out["camera_frames"] = self.frames.seq
        out["camera_error"] = self.frames.error
        out["servo_torque"] = [self.arm.servos[i].torque_on for i in self.arm._order]
        out["dynamixel_requests"] = self.arm.requests
        out["ft_frames"] = self.ft.frames_sent
        out["lidar_nodes"] = self.lidar.nodes_sent
        return out

    def rig_text(self) -> str:
        """The rig file of this HIL rig (the shape of drivers/robot_example.toml)."""
        p, r = self.world.lidar_pose()
        yaw = math.atan2(r[1, 0], r[0, 0])
        servo_lines = []
        for s in self.servos:
            extra = ""
            if s.unit == "m":
                extra = f', unit = "m", m_per_rad = {s.m_per_rad}'
            servo_lines.append(
                f'  {{ id = {s.id}, model = "{s.model}", joint = "{s.joint}"{extra}, '
                f"min = {s.min}, max = {s.max} }},"
            )
        servos = "\n".join(servo_lines)
        n = self.world.image_size
        cams = ""
        if self.cameras:
            for cam, name in (("scene_cam", "scene_camera"), ("wrist_cam", "wrist_camera")):
                cams += (
                    f'[[driver]]\nkind = "camera"\nname = "{name}"\n'
                    f'device = "{self.url}/{cam}.mjpg"\nfps = 30\n'
                    f'stream = {{ name = "{cam}", shape = [{n}, {n}, 3], max_age_ms = 100, '
                    f"latency_ms = 20 }}\n\n"
                )
        return f"""# Written by mmrobot.launch.hil for the HIL rig served from this folder; valid while it runs.
# state: {self.url}/state
name = "hil"
description = "HIL rig: simulated tabletop behind real drivers (ptys + MJPEG over HTTP)"

{cams}[[driver]]
kind = "rplidar"
name = "base_lidar"
port = "{self.dir / "rplidar"}"
baud_rate = 115200
stream = {{ name = "lidar", shape = [360, 3], rate_hz = 10, max_age_ms = 250 }}
extrinsics = {{ translation_m = [{p[0]:.4f}, {p[1]:.4f}, {p[2]:.4f}], rotation_rpy_rad = [0.0, 0.0, {yaw:.4f}] }}

[[driver]]
kind = "ft300"
name = "wrist_ft"
port = "{self.dir / "ft300"}"
baud_rate = 19200
stream = {{ name = "ft", rate_hz = 100, max_age_ms = 50, history = 10 }}

[[driver]]
kind = "dynamixel"
name = "arm"
port = "{self.dir / "dynamixel"}"
baud_rate = 1000000
response_timeout_s = 0.1
retries = 2
stream = {{ name = "joints", rate_hz = 200, max_age_ms = 50, history = 10 }}
servos = [
{servos}
]

[[actuator]]
kind = "dynamixel"
name = "arm_goal"
port = "{self.dir / "dynamixel"}"
baud_rate = 1000000
response_timeout_s = 0.1
retries = 2
servos = [
{servos}
]
"""


def wait_for_rig(directory: str | os.PathLike[str], timeout_s: float = 60.0) -> Path:
    """Block until a HIL rig serving from ``directory`` has written its rig file."""
    path = Path(directory) / "rig.toml"
    end = time.monotonic() + timeout_s
    while not path.is_file():
        if time.monotonic() > end:
            raise TimeoutError(f"no HIL rig wrote {path} within {timeout_s:g} s")
        time.sleep(0.05)
    return path


def read_state(rig_path: str | os.PathLike[str], timeout_s: float = 2.0) -> dict[str, Any]:
    """Ground truth of a running HIL rig (``GET /state``), found through its rig file."""
    import re
    import urllib.request

    text = Path(rig_path).read_text(encoding="utf-8")
    m = re.search(r"# state: (http://\S+)", text)
    if m is None:
        raise ValueError(f"{rig_path} is not a HIL rig file (no state URL)")
    with urllib.request.urlopen(m.group(1), timeout=timeout_s) as r:
        return json.loads(r.read())


HIL_DESCRIPTION = (
    "Serve the simulated tabletop as a real rig: Dynamixel bus, FT 300 and RPLIDAR on "
    "pseudo-terminals, cameras as MJPEG over HTTP. Writes DIR/rig.toml; then "
    "`mmrobot run launch/hil.toml` drives it with the real driver stack."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The HIL rig's options (shared by ``python -m mmrobot.launch.hil`` and ``mmrobot hil``)."""
    p.add_argument("--dir", default=str(DEFAULT_HIL_DIR), help="folder for port links + rig.toml")
    p.add_argument("--task", default=None, help='table layout, e.g. "pick color=red"')
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=0, help="HTTP port (default: a free one)")
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--no-cameras", action="store_true", help="serve no camera streams")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S s")


def main(argv: list[str] | None = None) -> int:
    """``python -m mmrobot.launch.hil``: serve the HIL rig until Ctrl-C or --duration."""
    p = argparse.ArgumentParser(prog="python -m mmrobot.launch.hil", description=HIL_DESCRIPTION)
    add_arguments(p)
    return serve(p.parse_args(argv))


def serve(args: argparse.Namespace) -> int:
    """Serve the rig described by parsed :func:`add_arguments` options."""
    rig = HilRig(
        args.dir,
        task=args.task,
        seed=args.seed,
        http_port=args.port,
        image_size=args.image_size,
        cameras=not args.no_cameras,
    )
    stop = threading.Event()
    import signal

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: stop.set())
    with rig:
        print(f"HIL rig ({rig.world.task}) serving; rig file {rig.rig_path}", flush=True)
        print(
            f"  dynamixel {rig.arm.port}\n  ft300     {rig.ft.port}\n  rplidar   {rig.lidar.port}"
        )
        print(f"  cameras   {rig.url}/scene_cam.mjpg, {rig.url}/wrist_cam.mjpg")
        print(f"  state     {rig.url}/state", flush=True)
        stop.wait(args.duration)
        st = rig.state()
        print(
            f"stopped after {st['sim_time_s']:.1f} s simulated / {st['wall_time_s']:.1f} s wall, "
            f"{st['slips']} slips",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
