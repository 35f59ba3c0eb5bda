"""benchmarks/vision_probe.py trains each variant of a set and reports its errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Real episodes: the probe reads the scene camera, the instruction and the named block."""
    from mmrobot.envs.collect import CollectConfig, collect

    dataset = tmp_path_factory.mktemp("probe") / "demos.h5"
    collect(
        CollectConfig(
            tasks=("reach", "stack", "pick"), episodes=3, out=str(dataset), workers=0, image_size=32
        ),
        progress=False,
    )
    return dataset


def _probe(dataset: Path, out: Path, *args: str) -> list[dict]:
    script = ROOT / "benchmarks" / "vision_probe.py"
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--dataset",
            str(dataset),
            "--quick",
            "--val-fraction",
            "0.34",
        ]
        + ["--json", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())["results"]


def test_far_set_runs_every_variant_and_records_its_sample_weights(demos, tmp_path):
    results = _probe(demos, tmp_path / "probe.json", "--set", "far")
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


def test_map_set_trains_the_map_and_only_reruns_a_row_exactly(demos, tmp_path):
    results = _probe(demos, tmp_path / "map.json", "--set", "map")
    plain, mapped, light = results[1:]
    assert light["camera_map"] == 0.1
    assert (plain["camera_map"], mapped["camera_map"]) == (0.0, 1.0)
    assert plain["pixel_film"] and mapped["pixel_film"]
    # the same batches: the map loss alone changes the stem, so the predictions differ
    assert plain["rms_cm"] != mapped["rms_cm"]
    # the map read back on the block's height plane: a position error per task, none for
    # the variant without a map
    assert "map" not in plain
    assert all(math.isfinite(e) and e >= 0 for e in mapped["map"]["xy_rms_cm_per_task"].values())
    assert mapped["map"]["rms_cm"][2] < 1e-4  # the height is given, not read
    # --only reruns one variant of the set: the same seed and batches, the same row
    again = _probe(demos, tmp_path / "again.json", "--set", "map", "--only", "2")
    assert [r["variant"] for r in again] == ["predict the mean", mapped["variant"]]
    assert again[1]["rms_cm"] == mapped["rms_cm"]
    with pytest.raises(AssertionError, match="has variants 1-3"):
        _probe(demos, tmp_path / "bad.json", "--set", "map", "--only", "4")


def test_pixel_from_set_starts_the_per_pixel_film_at_each_layer(demos, tmp_path):
    results = _probe(demos, tmp_path / "from.json", "--set", "pixel_from")
    variants = results[1:]
    assert [(r["pixel_film"], r["pixel_film_from"]) for r in variants] == [
        (True, 0),
        (True, 1),
        (True, 2),
    ]
    # the same seed and batches: fewer per-pixel layers, other parameters, other predictions
    assert variants[0]["rms_cm"] != variants[2]["rms_cm"]
