"""benchmarks/vision_probe.py trains each variant of a set and reports its errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_far_set_runs_every_variant_and_records_its_sample_weights(tmp_path):
    from mmrobot.envs.collect import CollectConfig, collect

    # real episodes: the probe reads the scene camera, the instruction and the named block
    dataset = tmp_path / "demos.h5"
    tasks = ("reach", "stack", "pick")
    collect(
        CollectConfig(tasks=tasks, episodes=3, out=str(dataset), workers=0, image_size=32),
        progress=False,
    )
    out = tmp_path / "probe.json"
    script = ROOT / "benchmarks" / "vision_probe.py"
    cmd = [sys.executable, str(script), "--dataset", str(dataset), "--set", "far", "--quick"]
    proc = subprocess.run(
        [*cmd, "--val-fraction", "0.34", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["variant"] for r in results][0] == "predict the mean"
    variants = results[1:]
    assert [(r["train_far_cm"], r["near_weight"]) for r in variants] == [
        (0.0, 0.0),
        (8.0, 0.0),
        (8.0, 0.2),
    ]
    for r in results:
        assert all(math.isfinite(v) and v >= 0 for v in r["rms_cm"])
    # the same seed and batches: a different sample weighting gives different predictions
    assert variants[0]["rms_cm"] != variants[2]["rms_cm"]
