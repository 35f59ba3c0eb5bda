"""benchmarks/decode_probe.py scores each action decoding against the expert's labels."""

from __future__ import annotations

import json
import math

from test_grounding_probe import run_probe
from test_trainer import config, write_dataset, write_policy_toml


def test_probe_scores_every_decoding_per_task(tmp_path):
    from mmrobot.train import train

    files = (
        write_policy_toml(tmp_path / "policy.toml"),
        write_dataset(tmp_path / "d.h5"),
        tmp_path,
    )
    run = train(config(files, tmp_path / "run", steps=2), progress=False)
    out = tmp_path / "probe.json"
    proc = run_probe(
        run.checkpoint, files[1], "--episodes", "2", "--json", str(out), script="decode_probe.py"
    )
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
