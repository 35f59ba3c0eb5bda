"""benchmarks/decode_probe.py scores each action decoding against the expert's labels."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from test_grounding_probe import run_probe
from test_trainer import config, write_dataset, write_policy_toml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from decode_probe import turn_shares  # noqa: E402


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
        assert r["onset_turn_steps"] <= r["turn_steps"]  # onsets are some of the turning steps
    # the decodings read one distribution three ways: they score differently on an untrained net
    assert len({round(r["all_steps_mm"], 6) for r in reach.values()}) > 1
    assert reach["argmax"]["samples"] == reach["mean"]["samples"] > 0
    for r in reach.values():  # every synthetic step turns 0.05 rad (float32: just over TURN_RAD)
        assert r["turn_steps"] == r["samples"]
        parts = (r["turn_its_way"], r["turn_none"], r["turn_other_way"])
        assert sum(parts) == pytest.approx(1.0)


def test_turn_onsets_are_the_first_step_of_each_turn_per_episode():
    from decode_probe import turn_onsets

    label = [0.0, 0.1, 0.1, 0.0, -0.1, -0.1, 0.1, 0.1]
    episode_of = [0, 0, 0, 0, 0, 1, 1, 2]  # episode 1 starts turning; so does episode 2
    assert np.flatnonzero(turn_onsets(label, episode_of)).tolist() == [1, 4, 5, 7]


def test_turn_shares_split_the_experts_turns_by_what_the_policy_did():
    label = [0.1, 0.1, -0.1, -0.1, 0.0, 0.03]  # the last two are not turns (0.05 rad or less)
    pred = [0.08, 0.01, 0.1, -0.1, 0.1, -0.1]
    r = turn_shares(pred, label)
    assert r["turn_steps"] == 4
    assert r["turn_its_way"] == 0.5  # 0.08 with 0.1, -0.1 with -0.1
    assert r["turn_none"] == 0.25  # 0.01: under 0.02 rad
    assert r["turn_other_way"] == 0.25  # 0.1 against -0.1
    assert r["turn_size_rad"] == pytest.approx((0.08 + 0.01 + 0.1 + 0.1) / 4)
