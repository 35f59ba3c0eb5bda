"""The HIL rig serving the calibration targets, in its own process (as it would be its own
machine), for the calibration tests that go through the real drivers."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mmrobot.calibrate.devices import HilGroundTruth
from mmrobot.launch.hil import serve_in_subprocess

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def calibration_hil(directory: Path) -> Iterator[Path]:
    """Serve ``mmrobot.launch.hil --calibration-targets --camera-size 640x480 --sensor-noise``
    from ``directory``; yields its rig file."""
    args = ("--calibration-targets", "--camera-size", "640x480", "--sensor-noise")
    with serve_in_subprocess(directory, *args) as rig:
        yield rig


def truth_of(rig: Path) -> HilGroundTruth:
    """The ground truth of the HIL rig that wrote ``rig`` (its ``/state``)."""
    url = re.search(r"# state: (\S+)", rig.read_text()).group(1)
    return HilGroundTruth(url)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle of the rotation between (3, 3) rotations ``a`` and ``b``, degrees."""
    c = (np.trace(a.T @ b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))
