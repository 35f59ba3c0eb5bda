"""The HIL rig serving the calibration targets, in its own process (as it would be its own
machine), for the calibration tests that go through the real drivers."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mmrobot.calibrate.devices import HilGroundTruth
from mmrobot.launch.hil import wait_for_rig

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def calibration_hil(directory: Path) -> Iterator[Path]:
    """Serve ``mmrobot.launch.hil --calibration-targets --camera-size 640x480 --sensor-noise``
    from ``directory``; yields its rig file."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "mmrobot.launch.hil", "--dir", str(directory)]
    cmd += ["--calibration-targets", "--camera-size", "640x480", "--sensor-noise"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=ROOT
    )
    try:
        try:
            rig = wait_for_rig(directory, timeout_s=90)
        except TimeoutError:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
            pytest.fail(f"HIL rig did not start:\n{out[-3000:]}")
        yield rig
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def truth_of(rig: Path) -> HilGroundTruth:
    """The ground truth of the HIL rig that wrote ``rig`` (its ``/state``)."""
    url = re.search(r"# state: (\S+)", rig.read_text()).group(1)
    return HilGroundTruth(url)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the rotation between (3, 3) rotations ``a`` and ``b``, degrees."""
    c = (np.trace(a.T @ b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
