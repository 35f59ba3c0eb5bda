"""benchmarks/bench_tick.py runs end to end at its smallest size: one quick round of "before"
(``git archive`` of a commit in the local history: no network) and "after" (this tree)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_tick.py"


def _bench_tick():
    spec = importlib.util.spec_from_file_location("bench_tick", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.mark.slow
def test_a_quick_round_times_every_part_of_the_tick_in_both_designs(tmp_path):
    bench = _bench_tick()
    no_before = bench.before_unavailable_reason()  # a shallow clone, a tarball: "after" only
    out = tmp_path / "bench_tick.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--rounds", "1", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if no_before:
        assert f"before: not measured ({no_before})" in proc.stdout
    data = json.loads(out.read_text())
    designs = ["after"] if no_before else ["before", "after"]
    assert data["benchmark"] == "bench_tick" and data["rounds"] == 1
    assert list(data["stats"]) == designs and [r["design"] for r in data["per_round"]] == designs
    for design in designs:
        (info,) = data["info"][design]
        stats = data["stats"][design]
        assert set(stats) == {*bench.COMPONENTS, bench.TICK}, design
        for row, s in stats.items():
            assert all(math.isfinite(v) for v in s.values()), (design, row, s)
            assert s["n"] == info["ticks"] - bench.WARMUP, (design, row)
            assert 0 < s["p50_ms"] <= s["p99_ms"] <= s["max_ms"], (design, row, s)
            assert 0 <= s["cpu_p50_ms"] <= s["cpu_p99_ms"], (design, row, s)
        # the tick row is the per-tick sum of its parts
        parts = [stats[p] for p in bench.TICK_PARTS]
        tick = stats[bench.TICK]
        assert tick["mean_ms"] == pytest.approx(sum(p["mean_ms"] for p in parts), rel=1e-9)
        assert tick["p50_ms"] >= max(p["p50_ms"] for p in parts)
        # the raised floor is above the whole circle: every command of that layer is clamped
        assert info["box-face events"]["workspace"] == info["ticks"], (design, info)
        assert info["reader samples"] > 0, (design, info)  # the joint reader shared the bus
