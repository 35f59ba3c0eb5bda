"""The HIL rig served from a subprocess, for tests that run a RobotSession against it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serving_hil(directory: Path, seed: int = 1) -> Iterator[Path]:
    """The HIL rig serving from ``directory`` in a subprocess; yields the rig file's path."""
    from mmrobot.launch.hil import serve_in_subprocess

    with serve_in_subprocess(directory, "--seed", str(seed)) as rig_path:
        yield rig_path
