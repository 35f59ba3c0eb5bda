"""benchmarks/decode_probe.py scores each action decoding against the expert's labels."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from test_trainer import config, write_dataset, write_policy_toml

ROOT = Path(__file__).resolve().parents[2]


def test_probe_scores_every_decoding_per_task(tmp_path):
    from mmrobot.train import train

    files = (
        write_policy_toml(tmp_path / "policy.toml"),
        write_dataset(tmp_path / "d.h5"),
        tmp_path,
    )
    run = train(config(files, tmp_path / "run", steps=2), progress=False)
    out = tmp_path / "probe.json"
    script = ROOT / "benchmarks" / "decode_probe.py"
    cmd = [sys.executable, str(script), "--checkpoint", str(run.checkpoint), "--dataset",
           str(files[1]), "--episodes", "2", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reach = json.loads(out.read_text())["results"]["reach"]
    assert sorted(reach) == ["argmax", "mean", "median"]
    for r in reach.values():
        assert math.isfinite(r["first_step_mm"]) and r["first_step_mm"] >= 0
        assert math.isfinite(r["all_steps_mm"]) and r["all_steps_mm"] >= 0
        assert 0.0 <= r["fine_share"] <= 1.0
    # the decodings read one distribution three ways: they score differently on an untrained net
    assert len({round(r["all_steps_mm"], 6) for r in reach.values()}) > 1
    assert reach["argmax"]["samples"] == reach["mean"]["samples"] > 0
