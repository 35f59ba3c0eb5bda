"""benchmarks/recipe_ablation.py trains and evaluates its variants, and keeps their results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_variants_train_evaluate_and_are_kept(tmp_path):
    from mmrobot.envs.collect import CollectConfig, collect

    data = tmp_path / "demos.h5"
    collect(CollectConfig(tasks=("pick",), episodes=2, out=str(data), workers=0), progress=False)
    out, report = tmp_path / "abl", tmp_path / "abl.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "recipe_ablation.py"), "--dataset",
           str(data), "--out", str(out), "--variant", "base", "--variant", "relabel",
           "task_relabel=1.0", "--tasks", "pick", "--quick", "--probe-dataset", str(data),
           "--json", str(report)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(report.read_text())["results"]
    assert [r["variant"] for r in results] == ["base", "relabel"]
    assert results[1]["overrides"] == ["task_relabel=1.0"]
    for r in results:
        assert r["per_task"] == {"pick": [r["success"][0], 1]} and r["steps"] == 20
        assert (out / r["variant"] / "checkpoint").is_dir()
        probe = r["probes"]["pick"]  # the default config has camera heads
        assert probe["camera_first_step_cm"] >= 0 and probe["pregrasp_mm"] >= 0
    # a rerun keeps what it has: nothing is trained again
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert again.returncode == 0 and "training" not in again.stdout
    assert json.loads(report.read_text())["results"] == results
