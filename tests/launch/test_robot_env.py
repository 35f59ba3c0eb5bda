"""The robot side from its own environment: ``pip install ".[robot]"`` (no torch, Open3D or
gymnasium) runs ``mmrobot run launch/hil.toml`` with an exported ONNX policy against
``mmrobot hil`` served from the full environment in another process, over the same
pseudo-terminals and camera streams a robot computer reads from hardware.

The robot environment is a second virtual environment, cached in
``.cache/robot-env/<key>`` (git ignores ``.cache/``; ``MMROBOT_ROBOT_ENV_CACHE`` moves it).
The key hashes pyproject.toml, the Python version and the platform, so the dependencies are
installed again whenever any of them changes; an environment whose build did not finish
(no ``.complete`` marker) is rebuilt, and those of other keys go when a new one is built
(unless another checkout sharing the cache used one within a day). mmrobot
itself is reinstalled from this tree (not editable: as a robot installs it) on every run, so
the cache never runs stale code.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mmrobot.launch.hil import read_state, wait_for_rig

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MMROBOT_ROBOT_ENV_CACHE", ROOT / ".cache" / "robot-env"))
HEAVY = ("torch", "open3d", "gymnasium")
pytestmark = pytest.mark.slow


def _key() -> str:
    h = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    h.update(f"{sys.version} {platform.platform()} {sys.executable}".encode())
    return h.hexdigest()[:16]


def _clean_env() -> dict[str, str]:
    """The environment for the robot's processes: nothing that puts other packages on its path."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    return {**env, "PYTHONNOUSERSITE": "1", "COLUMNS": "200"}


def _pip(python: Path, *args: str, timeout_s: float = 900) -> None:
    cmd = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *args]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout_s, env=_clean_env(), cwd=ROOT
    )
    if out.returncode:
        pytest.fail(
            f"{' '.join(cmd)} failed ({out.returncode}):\n{(out.stdout + out.stderr)[-4000:]}"
        )


def _build(env: Path) -> None:
    """A fresh venv with mmrobot[robot] from this tree, as on a robot (pip resolves it all)."""
    shutil.rmtree(env, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    _pip(python, "--upgrade", "pip")
    _pip(python, f"{ROOT}[robot]")
    # setuptools, to reinstall mmrobot on later runs without a build environment each time
    _pip(python, "setuptools>=77", "wheel")
    (env / ".complete").write_text(_key() + "\n")


@pytest.fixture(scope="module")
def robot_env() -> Path:
    """The cached robot environment, with mmrobot reinstalled from this tree."""
    CACHE.mkdir(parents=True, exist_ok=True)
    env = CACHE / _key()
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs never build one env at once
        python = env / "bin" / "python"
        usable = (env / ".complete").is_file() and (
            subprocess.run([str(python), "-c", "import mujoco"], env=_clean_env()).returncode == 0
        )
        if not usable:
            _remove_stale(env)
            _build(env)
        (env / ".complete").touch()  # in use: not stale for other checkouts sharing the cache
        _pip(python, "--no-deps", "--no-build-isolation", "--force-reinstall", str(ROOT))
    return env


def _remove_stale(keep: Path, unused_s: float = 86400) -> None:
    """Remove the environments of other keys: unfinished builds (none runs while the lock is
    held), and finished ones no run has used for a day (another checkout may share CACHE)."""
    for d in CACHE.iterdir():
        if not d.is_dir() or d == keep:
            continue
        marker = d / ".complete"
        if not marker.is_file() or time.time() - marker.stat().st_mtime > unused_s:
            shutil.rmtree(d, ignore_errors=True)


def _robot(env: Path, *args: str, timeout_s: float = 120, cwd: Path = ROOT):
    return subprocess.run(
        [str(env / "bin" / "mmrobot"), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=_clean_env(),
        cwd=cwd,
    )


def test_the_robot_env_has_no_training_stack_and_runs_the_installed_package(robot_env, tmp_path):
    python = str(robot_env / "bin" / "python")
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=_clean_env(),
    )
    dists = {d["name"].lower(): d["version"] for d in json.loads(listed.stdout)}
    assert not set(HEAVY) & set(dists), sorted(set(HEAVY) & set(dists))
    assert {"mmrobot", "mujoco", "onnxruntime", "matplotlib"} <= set(dists)
    code = (
        "import importlib.util as u, mmrobot; "
        f"print(mmrobot.__file__); print([m for m in {HEAVY!r} if u.find_spec(m)])"
    )
    out = subprocess.run(
        [python, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env=_clean_env(),
    )
    where, found = out.stdout.splitlines()
    assert Path(where).is_relative_to(robot_env) and found == "[]"  # not this tree's mmrobot


@pytest.fixture(scope="module")
def onnx_export(checkpoint, tmp_path_factory):
    """The conftest's policy exported in the full environment, as a workstation would."""
    from mmrobot.deploy import export_onnx

    out = tmp_path_factory.mktemp("export") / "policy"
    export_onnx(checkpoint, out)
    return out


@pytest.fixture(scope="module")
def hil(tmp_path_factory):
    """`mmrobot hil` from the full environment (this one), in its own process."""
    d = tmp_path_factory.mktemp("hil")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrobot.cli", "hil", "--dir", str(d), "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        cwd=ROOT,
    )
    try:
        wait_for_rig(d, timeout_s=90)
    except TimeoutError:
        proc.kill()
        pytest.fail(f"HIL rig did not start:\n{proc.communicate()[0].decode()[-3000:]}")
    yield d / "rig.toml"
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_mmrobot_run_from_the_robot_env_drives_the_hil_rig_with_an_onnx_policy(
    robot_env, hil, onnx_export, tmp_path
):
    before = np.asarray(read_state(hil)["arm_qpos_rad"])
    out = _robot(
        robot_env,
        "run",
        "launch/hil.toml",
        f'rig.file="{hil}"',
        "policy.checkpoint=",
        f'policy.onnx="{onnx_export}"',
        "loop.rate_hz=50",
        "loop.policy_rate_hz=10",
        "loop.watchdog_periods=25",  # 0.5 s, the most a launch file may set
        "run.max_seconds=2",
        f'run.timing_png="{tmp_path / "timing.png"}"',
        f'run.results_json="{tmp_path / "results.json"}"',
        "-i",
        "put the red block in the bin",
        timeout_s=300,
    )
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-4000:]
    assert "ONNX Runtime runs policy.onnx (fp32) on CPUExecutionProvider" in log
    (row,) = json.loads((tmp_path / "results.json").read_text())
    assert row["instruction"] == "put the red block in the bin"
    assert row["reason"] == "completed" and not row["interrupted"]
    assert row["steps"] >= 25, row  # 2 s at 50 Hz is 100 commands; a loaded machine skips some
    assert (tmp_path / "timing.png").stat().st_size > 0
    # The commands went over the Dynamixel wire: the simulated arm moved.
    after = np.asarray(read_state(hil)["arm_qpos_rad"])
    assert np.abs(after - before).max() > 0.005, (before, after)


@pytest.mark.parametrize(
    "argv,extra",
    [
        (["train", "policies/train_default.toml"], "train"),
        (["export", "policies/release", "--out", "{tmp}/x"], "train"),
        (["policy", "info", "policies/default.toml"], "train"),
        (["collect", "--episodes", "1", "--out", "{tmp}/x.h5"], "sim"),
        (["eval", "--policy", "policies/release", "--episodes", "1"], "sim,train"),
        (["release", "--toy"], "sim,train"),
        (["hil", "--duration", "1"], "sim"),
        (["run", "launch/sim_demo.toml", "-i", "lift the red block"], "sim,train"),
        (["run", "launch/hil.toml", "-i", "lift the red block"], "train"),  # a torch checkpoint
        (["launch", "launch/sim_demo.toml", "--check"], "sim,train"),
    ],
    ids=lambda x: " ".join(x)[:30] if isinstance(x, list) else x,
)
def test_in_the_robot_env_a_command_without_its_extra_exits_2_with_the_hint(
    robot_env, argv, extra, tmp_path
):
    out = _robot(robot_env, *(a.replace("{tmp}", str(tmp_path)) for a in argv))
    assert out.returncode == 2, out.stdout + out.stderr
    assert f'pip install "mmrobot[{extra}]"' in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_doctor_in_the_robot_env_lists_its_extras_and_providers(robot_env):
    out = _robot(robot_env, "doctor", timeout_s=300)
    assert out.returncode == 0, out.stdout + out.stderr  # a missing extra is not a failure
    assert 'pip install "mmrobot[sim]"' in out.stdout  # printed as text, not read as markup
    code = (
        "import json; from dataclasses import asdict; from mmrobot.launch.doctor import "
        "run_checks; print(json.dumps({c.name: asdict(c) for c in run_checks()}))"
    )
    checks = json.loads(
        subprocess.run(
            [str(robot_env / "bin" / "python"), "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env=_clean_env(),
            timeout=300,
        ).stdout
    )
    assert checks["extras"]["found"] == (
        "present: core, robot; not installed: sim (no gymnasium, h5py); "
        "train (no torch, safetensors, h5py, onnx, onnxscript); pointcloud (no open3d); "
        "tensorboard (no tensorboard); lerobot (no h5py, pyarrow, av); viz (no rerun)"
    )
    assert checks["open3d"]["status"] == "ok"  # absent, and not needed on a robot
    assert (
        "an ONNX policy runs on CPUExecutionProvider by default" in checks["accelerators"]["found"]
    )
