"""``mmrobot doctor``: check this machine for what mmrobot needs, and say how to fix each gap.

It lists the install extras that are present (:mod:`mmrobot.core.extras`) and the ONNX
Runtime execution providers; checks of what an absent extra would use (Open3D, rendering) say
so instead of failing.

Each check runs in isolation (rendering and Open3D in subprocesses, since a missing system
library can abort the interpreter) and returns a :class:`Check` with a status and a fix.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from mmrobot.core.extras import EXTRAS, install_hint, is_present, missing_modules

__all__ = ["Check", "run_checks", "CHECKS"]

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    """The result of one check: what was checked, its status, what was found, how to fix it."""

    name: str
    status: Status
    found: str
    fix: str = ""


def _python_subprocess(
    code: str, env: dict[str, str] | None = None, timeout_s: float = 60
) -> tuple[bool, str]:
    try:
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**os.environ, **(env or {})},
        )
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout_s:.0f} s"
    text = (out.stdout + out.stderr).strip().splitlines()
    return out.returncode == 0, (text[-1] if text else f"exit code {out.returncode}")


def check_python() -> Check:
    v = sys.version_info
    ok = (3, 10) <= (v.major, v.minor) <= (3, 12)
    return Check(
        "python",
        "ok" if ok else "warn",
        f"{v.major}.{v.minor}.{v.micro}",
        "" if ok else "mmrobot is tested on Python 3.10-3.12",
    )


def check_extras() -> Check:
    """The core install and which extras are present (:mod:`mmrobot.core.extras`). A missing
    extra is not a fault (a robot needs no ``[train]``); a gap in the core is."""
    core_missing = missing_modules("core")
    present, absent = [], []
    for name in EXTRAS:
        gone = missing_modules(name)
        if gone:
            absent.append(f"{name} (no {', '.join(gone)})")
        else:
            present.append(name)
    found = "present: core, " if not core_missing else ""
    found += ", ".join(present) or "no extra"
    if absent:
        found += "; not installed: " + "; ".join(absent)
    if core_missing:
        return Check(
            "extras",
            "fail",
            f"core modules missing: {', '.join(core_missing)}; {found}",
            "pip install mmrobot (in a clone: pip install -e .)",
        )
    fix = ""
    if absent:
        names = [a.split(" ")[0] for a in absent]
        fix = "to add one: " + ", ".join(install_hint([n]) for n in names)
    return Check("extras", "ok", found, fix)


def check_open3d() -> Check:
    if not is_present("open3d"):
        return Check(
            "open3d",
            "ok",
            "not installed (the [pointcloud] extra: only lidar point-cloud filtering needs it)",
        )
    ok, msg = _python_subprocess("import open3d; print(open3d.__version__)")
    if ok:
        return Check("open3d", "ok", f"imports ({msg})")
    fix = "pip install open3d"
    if "libusb" in msg:
        fix = "install the system library libusb-1.0-0 (Debian/Ubuntu: sudo apt-get install libusb-1.0-0)"
    return Check(
        "open3d",
        "warn",
        f"does not import: {msg}",
        fix + "; only point-cloud filtering in the lidar drivers needs it",
    )


_RENDER_CODE = """
import mujoco
m = mujoco.MjModel.from_xml_string('<mujoco><worldbody><geom size="1"/></worldbody></mujoco>')
r = mujoco.Renderer(m, 16, 16)
d = mujoco.MjData(m)
mujoco.mj_forward(m, d)
r.update_scene(d)
print(r.render().shape)
"""


def check_rendering() -> Check:
    if not is_present("mujoco"):
        return Check(
            "rendering", "ok", "MuJoCo is not installed (the [sim] extra renders; a robot does not)"
        )
    # Only the simulation renders: on a robot ([robot] without [sim]) a missing GL is a note.
    severity: Status = "fail" if is_present("gymnasium") else "warn"
    results = {}
    for backend in ("egl", "osmesa"):
        ok, msg = _python_subprocess(_RENDER_CODE, {"MUJOCO_GL": backend})
        results[backend] = (ok, msg)
    working = [b for b, (ok, _) in results.items() if ok]
    chosen = os.environ.get("MUJOCO_GL")
    detail = "; ".join(f"{b}: {'works' if ok else msg}" for b, (ok, msg) in results.items())
    if not working:
        return Check(
            "rendering",
            severity,
            detail,
            "install Mesa's EGL (Debian/Ubuntu: sudo apt-get install libegl1 libgl1) "
            "or OSMesa (sudo apt-get install libosmesa6), then set MUJOCO_GL=egl or osmesa",
        )
    if chosen and chosen not in working and chosen != "glfw":
        return Check(
            "rendering",
            "warn",
            f"MUJOCO_GL={chosen} but only {working} work; {detail}",
            f"export MUJOCO_GL={working[0]}",
        )
    return Check("rendering", "ok", f"headless: {', '.join(working)} ({detail})")


def _device_files(name: str, patterns: tuple[str, ...], absent_fix: str, group: str) -> Check:
    devices = sorted(d for pattern in patterns for d in glob.glob(pattern))
    if not devices:
        return Check(name, "warn", f"no {' or '.join(patterns)} found", absent_fix)
    denied = [d for d in devices if not os.access(d, os.R_OK | os.W_OK)]
    if denied:
        return Check(
            name,
            "fail",
            f"no read/write access to {', '.join(denied)}",
            f"add yourself to the {group} group: sudo usermod -aG {group} $USER, then log in again",
        )
    return Check(name, "ok", ", ".join(devices))


def check_serial_ports() -> Check:
    return _device_files(
        "serial ports",
        ("/dev/ttyUSB*", "/dev/ttyACM*"),
        "plug in the device; try `mmrobot emulate KIND` to work without hardware",
        "dialout",
    )


def check_cameras() -> Check:
    return _device_files(
        "cameras",
        ("/dev/video*",),
        "plug in a USB camera, or use a video file or URL as the camera `device`",
        "video",
    )


def check_accelerators() -> Check:
    """ONNX Runtime's execution providers (and the one an exported policy would run on by
    default), and torch's CUDA where torch is installed."""
    from mmrobot.deploy.onnx_policy import DEFAULT_PROVIDERS, plan_providers

    ok, msg = _python_subprocess(
        "import onnxruntime as o; print(o.__version__, ','.join(o.get_available_providers()))"
    )
    if not ok:
        return Check(
            "accelerators", "fail", f"onnxruntime does not import: {msg}", "pip install onnxruntime"
        )
    version, _, names = msg.partition(" ")
    available = names.split(",")
    chosen = plan_providers(DEFAULT_PROVIDERS, available, DEFAULT_PROVIDERS + tuple(available))
    found = (
        f"onnxruntime {version} providers: {', '.join(available)}; an ONNX policy runs on "
        f"{chosen.order[0]} by default"
    )
    if is_present("torch"):
        ok, msg = _python_subprocess("import torch; print(torch.cuda.is_available())")
        found += f"; torch CUDA: {msg if ok else 'torch does not import: ' + msg}"
    fix = ""
    if chosen.order[0] == "CPUExecutionProvider":
        fix = (
            "on an NVIDIA GPU: pip install onnxruntime-gpu in place of onnxruntime (CUDA, "
            "TensorRT); on a Jetson: the onnxruntime wheel for its JetPack (docs/deploy.md)"
        )
    return Check("accelerators", "ok", found, fix)


def check_realtime() -> Check:
    """What a control loop's ``[loop]`` settings can get here: ``SCHED_FIFO`` (tried in a
    subprocess, so this process keeps its scheduling), CPU affinity and the CPUs allowed."""
    if not hasattr(os, "sched_setscheduler"):
        return Check(
            "realtime", "warn", "no SCHED_FIFO or CPU affinity on this OS",
            "the loop runs at normal priority; give it a quiet machine",
        )  # fmt: skip
    ok, msg = _python_subprocess(
        "import os; os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50)); print('granted')"
    )
    cpus = sorted(os.sched_getaffinity(0))
    shm_ok, shm = _shared_memory()
    found = (
        f"SCHED_FIFO {'granted' if ok else 'refused (' + msg + ')'}; CPU affinity available, "
        f"CPUs {cpus}; gc.freeze available; {shm}"
    )
    if len(cpus) >= 2:  # the split that met the loop's targets on 2 cores (docs/hil.md)
        found += (
            f"; to keep a CPU for the loop alone: loop.cpu_affinity = [{cpus[-1]}], "
            f"loop.policy_cpu_affinity = {cpus[:-1]}, loop.driver_cpu_affinity = {cpus[:-1]}"
        )
    fixes = [] if ok else [
        "loop.realtime_priority needs root or CAP_SYS_NICE: sudo setcap cap_sys_nice+ep "
        "$(readlink -f $(which python)), or an rtprio limit in /etc/security/limits.conf; "
        "without it the loop runs at normal priority and says so"
    ]  # fmt: skip
    if not shm_ok:
        fixes.append(
            'loop.driver_worker = "process" keeps the sensor streams in shared memory: '
            'mount a tmpfs on /dev/shm, or set loop.driver_worker = "thread"'
        )
    return Check("realtime", "ok" if ok and shm_ok else "warn", found, "; ".join(fixes))


def _shared_memory() -> tuple[bool, str]:
    """Whether a shared-memory segment can be made here (``loop.driver_worker = "process"``)."""
    from multiprocessing import shared_memory

    try:
        seg = shared_memory.SharedMemory(create=True, size=1 << 20)
    except OSError as e:
        return False, f'no shared memory for loop.driver_worker = "process" ({e})'
    seg.close()
    seg.unlink()
    return True, 'shared memory available (loop.driver_worker = "process")'


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_extras,
    check_open3d,
    check_rendering,
    check_serial_ports,
    check_cameras,
    check_accelerators,
    check_realtime,
)


def run_checks() -> list[Check]:
    """Run every check; a check that raises is reported as failed, never propagated."""
    results = []
    for check in CHECKS:
        try:
            results.append(check())
        except Exception as e:  # a broken check must not hide the others
            results.append(
                Check(check.__name__.removeprefix("check_"), "fail", f"{type(e).__name__}: {e}")
            )
    return results
