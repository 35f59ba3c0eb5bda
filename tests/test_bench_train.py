"""benchmarks/bench_train.py runs end to end: v0 (from git history) and the current design."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "bench_train.py"


def _v0_unavailable_reason() -> str | None:
    spec = importlib.util.spec_from_file_location("bench_train", SCRIPT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.v0_unavailable_reason()


@pytest.mark.slow
def test_quick_run_measures_both_designs_on_1_and_2_threads(tmp_path):
    reason = _v0_unavailable_reason()
    if reason:
        pytest.skip(f"v0 needs the git history: {reason}")
    out = tmp_path / "bench_train.json"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--repeats", "1", "--latency-calls", "3"]
    proc = subprocess.run(
        [*cmd, "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["v0"]["measured"], data["v0"]["reason"]
    for design in ("v0", "current"):
        for threads in ("1", "2"):
            train = data["designs"][design]["train"][threads]
            assert train["samples_per_s"] > 0, (design, threads)
            assert train["parts"]["transformer"]["ms"] > 0, (design, threads)
        for threads in ("1", "2"):  # batch-1 latency at both thread counts
            assert data["designs"][design]["latency"][threads]["torch"]["median_ms"] > 0, design
    assert set(data["ratio_vs_v0"]) == {"1", "2"}
    assert all(r > 0 for r in data["ratio_vs_v0"].values())
    assert "v0 not measured" not in proc.stdout
