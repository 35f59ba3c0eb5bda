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
import json
import math
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mmrobot.drivers.emulators.rplidar import RplidarEmulator
from mmrobot.launch.hil_servers import (
    CameraFrames,
    HttpServer,
    SimDynamixelEmulator,
    SimFT300Emulator,
    SimLidarRoom,
    SimWorld,
    hil_servos,
    make_http_handler,
)

__all__ = [
    "DEFAULT_HIL_DIR",
    "HilRig",
    "SimDynamixelEmulator",
    "SimFT300Emulator",
    "SimLidarRoom",
    "SimWorld",
    "hil_servos",
    "main",
    "serve_in_subprocess",
]

DEFAULT_HIL_DIR = Path("/tmp/mmrobot-hil")


# --------------------------------------------------------------------------- the rig


class HilRig:
    """The simulated world and every device of the HIL rig, served from this process.

    Args:
        directory: where the port links (``dynamixel``, ``ft300``, ``rplidar``) and
            ``rig.toml`` go.
        task: table layout task spec; None draws one.
        seed: layout seed.
        http_port: camera/state HTTP port (0: a free one).
        image_size: camera stream side in the rig file (the policy's camera shape); also
            the rendered frame side unless ``camera_size`` is given.
        cameras: serve the cameras (rendering costs CPU; tests of the arm can skip it).
        real_time_factor: simulated seconds per wall second.
        calibration_targets: serve the calibration scene
            (:func:`mmrobot.calibrate.targets.build_calibration_scene`: the ChArUco board and
            the lidar box, blocks parked off the table) instead of a task layout, for
            ``mmrobot calibrate KIND DIR/rig.toml``; ``/state`` then also reports the ground
            truth of the calibrations (``calibration_truth``).
        camera_size: (width, height) of the rendered and served frames (e.g. (640, 480) for
            calibration: a ChArUco corner needs more pixels than the policy's 96); the rig
            file's streams keep ``image_size``, the driver resizes.
        sensor_noise: datasheet-sized errors on the serial sensors
            (:data:`mmrobot.calibrate.sim.DATASHEET_NOISE`): FT 300 noise 0.1 N / 0.005 N*m
            plus a bias, lidar range noise 1 cm. Off by default.
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
        calibration_targets: bool = False,
        camera_size: tuple[int, int] | None = None,
        sensor_noise: bool = False,
    ) -> None:
        self.dir = Path(directory)
        self.calibration_scene: Any = None
        self._arm_frames: Any = None
        xml_path = None
        if calibration_targets:
            from mmrobot.calibrate.targets import build_calibration_scene

            self.calibration_scene = build_calibration_scene(self.dir / "calibration_scene")
            xml_path = self.calibration_scene.path
        self.world = SimWorld(
            task, seed, image_size, real_time_factor, xml_path=xml_path, camera_size=camera_size
        )
        self.servos = hil_servos(self.world.scene.arm_range)
        self.cameras = cameras
        self.http_port = http_port
        self.stopping = threading.Event()
        self.frames = CameraFrames(self.world)
        self.arm = SimDynamixelEmulator(self.world, self.servos, link=self.dir / "dynamixel")
        ft_noise: dict[str, Any] = {}
        lidar_noise = 0.0
        self.ft_bias: tuple[float, ...] = (0.0,) * 6
        if sensor_noise:
            from mmrobot.calibrate.sim import DATASHEET_NOISE as N

            ft_noise = {"noise_force_n": N.ft_force_n, "noise_torque_nm": N.ft_torque_nm}
            self.ft_bias, lidar_noise = N.ft_bias, N.lidar_range_m
        self.ft = SimFT300Emulator(
            self.world, bias=self.ft_bias, link=self.dir / "ft300", seed=seed, **ft_noise
        )
        self.lidar = RplidarEmulator(
            SimLidarRoom(self.world),
            range_noise_m=lidar_noise,
            link=self.dir / "rplidar",
            seed=seed + 1,
        )
        self._server: HttpServer | None = None
        self.rig_path = self.dir / "rig.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> HilRig:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.world.start()
        self._server = HttpServer(("127.0.0.1", self.http_port), make_http_handler(self))
        self.http_port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, name="hil-http", daemon=True).start()
        if self.cameras:
            self.frames.start()
            # the first render (GL context, shaders) holds the interpreter: let it pass
            # before clients start pinging the serial devices with 100 ms timeouts
            self.frames.wait_first(timeout_s=60.0)
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
        if self.calibration_scene is not None:
            out["calibration_truth"] = self.calibration_truth()
        return out

    def calibration_truth(self) -> dict[str, Any]:
        """What calibration on this rig should find, as plain data: the F/T bias, the
        payload (at the current gripper opening), each camera's matrix at the served size and
        its OpenCV frame in the TCP frame, and the lidar's pose in the base frame."""
        from mmrobot.calibrate._geometry import homogeneous
        from mmrobot.calibrate.kinematics import ArmFrames
        from mmrobot.calibrate.sim import camera_in_tcp_truth, intrinsics_truth, payload_truth

        w = self.world
        cams = ("scene_cam", "wrist_cam")
        with w.lock:  # HTTP threads share the kinematics' MjData
            if self._arm_frames is None:
                self._arm_frames = ArmFrames(w.model)
            frames = self._arm_frames
            p, r = w.lidar_pose()
            mass, com = payload_truth(w.scene, frames)
            q = w.scene.arm_qpos.copy()
            return {
                "ft_bias": list(self.ft_bias),
                "payload_mass_kg": mass,
                "payload_com_m": com.tolist(),
                "camera_matrix": {
                    c: intrinsics_truth(w.model, c, w.camera_size).tolist() for c in cams
                },
                "camera_in_tcp": {c: camera_in_tcp_truth(frames, q, c).tolist() for c in cams},
                "lidar_pose": homogeneous(r, p).tolist(),
            }

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


@contextlib.contextmanager
def serve_in_subprocess(
    directory: str | os.PathLike[str], *args: str, timeout_s: float = 90.0
) -> Iterator[Path]:
    """``python -m mmrobot.launch.hil --dir DIRECTORY ARGS...`` in a subprocess (its own
    interpreter, as the rig would be its own machine); yields its rig file once written and
    stops the rig on exit.

    Raises:
        TimeoutError: no rig file within ``timeout_s``; the message ends with the rig's output.
    """
    import subprocess

    cmd = [sys.executable, "-m", "mmrobot.launch.hil", "--dir", str(directory), *args]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        try:
            rig = wait_for_rig(directory, timeout_s=timeout_s)
        except TimeoutError as e:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
            raise TimeoutError(f"{e}; the rig printed:\n{out[-3000:]}") from None
        yield rig
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


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
    p.add_argument(
        "--calibration-targets",
        action="store_true",
        help="serve the calibration scene (ChArUco board, lidar box) for `mmrobot calibrate`",
    )
    p.add_argument(
        "--camera-size",
        type=_camera_size,
        default=None,
        metavar="WxH",
        help="render and serve frames of this size, e.g. 640x480 for calibration "
        "(default: --image-size square; the rig file's streams keep --image-size)",
    )
    p.add_argument(
        "--sensor-noise",
        action="store_true",
        help="datasheet-sized F/T noise and bias and lidar range noise (default: none)",
    )
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S s")


def _camera_size(text: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    try:
        w, h = (int(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--camera-size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 640x480"
        ) from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise argparse.ArgumentTypeError(
            f"--camera-size {text!r}: width and height must be 16 to 4096 pixels"
        )
    return w, h


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
        calibration_targets=args.calibration_targets,
        camera_size=args.camera_size,
        sensor_noise=args.sensor_noise,
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
