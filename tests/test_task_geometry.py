"""benchmarks/task_geometry.py: where the named block lies in an evaluation split's episodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "task_geometry.py"


def test_the_swapped_block_is_measured_where_the_layout_put_it(tmp_path):
    out = tmp_path / "geometry.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tasks", "reach", "push", "--episodes", "6"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "instruction_swap" in proc.stdout and "load average" in proc.stdout
    res = json.loads(out.read_text())["results"]
    assert set(res) == {"reach", "push"}
    for task in res:
        for split in ("train", "instruction_swap"):
            for values in res[task][split].values():
                assert len(values) == 6 and all(0 <= v < 1.0 for v in values)
    # reach's goal is a point straight above its block: no horizontal distance
    for split in ("train", "instruction_swap"):
        assert np.allclose(res["reach"][split]["block_to_goal"], 0.0, atol=1e-6)
    # push: the layout's block starts at its zone's edge (at least 12 cm away); the swap names
    # another block of the same scene, so the same seeds give other distances
    train, swap = res["push"]["train"], res["push"]["instruction_swap"]
    assert min(train["block_to_goal"]) >= 0.12 - 1e-6
    assert not np.allclose(train["block_to_goal"], swap["block_to_goal"])
    assert not np.allclose(train["tcp_to_block"], swap["tcp_to_block"])


def test_an_unknown_split_is_refused_with_the_valid_ones():
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--tasks", "reach", "--episodes", "1"]
        + ["--splits", "train,randomized"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "'randomized' is not one of train, instruction_swap" in proc.stderr
