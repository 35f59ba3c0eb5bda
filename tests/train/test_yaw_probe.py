"""benchmarks/yaw_probe.py: its two targets and a smoke run of its variants."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def picks(tmp_path_factory):
    """Three real pick episodes of the expert that turns from the first tick."""
    from mmrobot.envs.collect import CollectConfig, collect

    path = tmp_path_factory.mktemp("yaw") / "demos.h5"
    collect(
        CollectConfig(tasks=("pick",), episodes=3, out=str(path), workers=0, image_size=32),
        progress=False,
    )
    return path


def test_the_blocks_own_yaw_stays_put_while_the_tool_turns(picks):
    """The ``block`` target is the turn plus the tool's yaw read from ``ee_pose``: while the
    expert turns the tool toward a block that does not move, the turn changes and the block's
    own yaw does not (a wrong sign or column in ``tool_yaw`` would make it follow the tool)."""
    from yaw_probe import load

    from mmrobot.envs.privileged import turn_from_target

    data = load(str(picks), range(3), every=1)
    first = np.flatnonzero(data["moments"]["first_step"])
    for start in first:
        steps = slice(start, start + 6)  # the expert turns in its first ticks
        turn = np.degrees(turn_from_target(data["targets"]["turn"][steps]))
        block = np.degrees(turn_from_target(data["targets"]["block"][steps]))
        assert np.ptp(turn) > 5.0  # the tool turned ...
        assert np.ptp(block) < 1.0  # ... and the block's own yaw stayed


def run_yaw_probe(dataset, *args: str) -> subprocess.CompletedProcess:
    """``benchmarks/yaw_probe.py --dataset D ARGS`` in a subprocess."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / "yaw_probe.py"), "--dataset", str(dataset)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def test_quick_run_reports_every_variant_and_the_no_turn_baselines(picks, tmp_path):
    out = tmp_path / "probe.json"
    variants = ("--variants", "wrist:turn", "scene:block")
    proc = run_yaw_probe(picks, *variants, "--quick", "--val-fraction", "0.34", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["variant"] for r in results] == [
        "no turn (block)",
        "no turn (turn)",
        "wrist -> turn",
        "scene -> block",
    ]
    for r in results:
        cell = r["results"]["pick/first_step"]
        assert cell["steps"] == 1  # one held-out episode, one first step
        assert 0.0 <= cell["median_deg"] <= 45.0
    # predicting no turn is never the right direction
    assert results[1]["results"]["pick/all"]["right_way"] == 0.0


def test_a_bad_variant_is_refused_with_the_choices(picks):
    proc = run_yaw_probe(picks, "--variants", "top:turn")
    assert proc.returncode == 2
    assert "top:turn" in proc.stderr and "wrist" in proc.stderr
