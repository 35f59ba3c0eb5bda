"""benchmarks/grasp_recovery.py forces the expert's first grasp off along the fingers' axis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "grasp_recovery.py"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300, cwd=ROOT
    )


def test_an_off_axis_closing_misses_high_and_an_on_axis_one_holds(tmp_path):
    results = {}
    for offset in ("0", "0.035"):
        out = tmp_path / f"r{offset}.json"
        proc = run("--tasks", "pick", "--seeds", "2", "--offset", offset, "--json", str(out))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        results[offset] = json.loads(out.read_text())["results"]["pick"]
    # at the expert's own grasp point the forced closing is the expert's grasp: it holds
    on_axis = [e for e in results["0"]["episodes"] if "held" in e]
    assert on_axis and all(e["held"] for e in on_axis)
    # 3.5 cm off along the fingers a pad lands on the block's top: a miss, closed high
    off = results["0.035"]
    misses = [e for e in off["episodes"] if e.get("held") is False]
    assert off["misses"] == len(misses) >= 1
    assert all(e["dz_cm"] > 2.0 for e in misses)
    assert 0 <= off["recovered"] <= off["misses"]


def test_tasks_without_a_grasp_are_refused():
    proc = run("--tasks", "reach")
    assert proc.returncode != 0
    assert "only pick, place and stack grasp a block" in proc.stderr
