"""The HIL rig served from a subprocess, for tests that run a RobotSession against it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serving_hil(directory: Path, seed: int = 1) -> Iterator[Path]:
    """``python -m mmrobot.launch.hil`` in a subprocess (its own GIL, as it would be its own
    machine), serving from ``directory``; yields the rig file's path."""
    import os
    import subprocess
    import sys

    from mmrobot.launch.hil import wait_for_rig

    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrobot.launch.hil", "--dir", str(directory), "--seed", str(seed)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    try:
        try:
            rig_path = wait_for_rig(directory, timeout_s=90)
        except TimeoutError:
            proc.kill()
            out = proc.communicate()[0].decode(errors="replace")
            pytest.fail(f"HIL rig did not start:\n{out[-3000:]}")
        yield rig_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
