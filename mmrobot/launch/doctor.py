"""``mmrobot doctor``: check this machine for what mmrobot needs, and say how to fix each gap.

Each check runs in isolation (rendering and Open3D in subprocesses, since a missing system
library can abort the interpreter) and returns a :class:`Check` with a status and a fix.
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

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


def check_packages() -> Check:
    wanted = [
        "numpy",
        "torch",
        "mujoco",
        "gymnasium",
        "open3d",
        "opencv-python-headless",
        "pyserial",
        "onnxruntime",
        "onnx",
        "mcap",
        "pydantic",
        "rich",
    ]
    found, missing = [], []
    for name in wanted:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if missing:
        return Check(
            "packages",
            "fail",
            f"missing: {', '.join(missing)}",
            f"pip install {' '.join(missing)} (or: make setup)",
        )
    return Check("packages", "ok", "; ".join(found))


def check_open3d() -> Check:
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
            "fail",
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
    ok, msg = _python_subprocess(
        "import onnxruntime as o, torch; "
        "print(f'onnxruntime providers {o.get_available_providers()}; torch CUDA {torch.cuda.is_available()}')"
    )
    return Check(
        "accelerators", "ok" if ok else "warn", msg, "" if ok else "pip install onnxruntime torch"
    )


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_packages,
    check_open3d,
    check_rendering,
    check_serial_ports,
    check_cameras,
    check_accelerators,
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
