"""benchmarks/grounding_probe.py reads a trained policy's camera heads on recorded episodes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
from test_trainer import config, write_dataset, write_policy_toml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))


def run_probe(checkpoint, dataset, *args: str, script: str = "grounding_probe.py"):
    """``benchmarks/<script> --checkpoint C --dataset D ARGS`` in a subprocess."""
    script = ROOT / "benchmarks" / script
    cmd = [sys.executable, str(script), "--checkpoint", str(checkpoint), "--dataset", str(dataset)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=300, cwd=ROOT)


def probe_a_trained_run(tmp_path, turn: bool = False, positions: bool = True):
    """Train 3 steps with camera heads (and block_yaw heads; without ``positions``, those
    alone), probe the run: (process, the JSON's per-task results)."""
    import re

    from mmrobot.train import train

    policy = write_policy_toml(tmp_path / "policy.toml", encoder_aux=True, turn=turn)
    if not positions:
        text = re.sub(
            r"(?m)^aux_weights = .*$", "aux_weights = { block_yaw = 1.0 }", policy.read_text()
        )
        policy.write_text(text)
    files = (
        policy,
        write_dataset(tmp_path / "demos.h5", aux=True),
        tmp_path,
    )
    run = train(config(files, tmp_path / "run", steps=3, perception_steps=1), progress=False)
    out = tmp_path / "probe.json"
    proc = run_probe(run.checkpoint, files[1], "--episodes", "2", "--json", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text())["results"]


def test_probe_reports_first_step_and_all_step_errors_per_task(tmp_path):
    proc, results = probe_a_trained_run(tmp_path)
    reach = results["reach"]
    assert reach["episodes"] == 2  # the dataset has 3 episodes: --episodes caps them
    values = [reach[k] for k in ("median_cm", "first_step_median_cm", "first_step_p90_cm")]
    assert all(math.isfinite(v) and v >= 0 for v in values)
    assert reach["first_step_p90_cm"] >= reach["first_step_median_cm"]
    assert "block_yaw head" not in proc.stdout  # no turn head: no turn table


def test_probe_reports_the_turn_heads_first_step_error(tmp_path):
    proc, results = probe_a_trained_run(tmp_path, turn=True)
    assert "block_yaw head" in proc.stdout
    reach = results["reach"]
    for head in ("", "camera_"):  # the fused head, then the camera one (camera_yaw)
        assert 0.0 <= reach[f"{head}first_step_turn_median_deg"] <= 45.0
        assert 0.0 <= reach[f"{head}first_step_turn_right_way"] <= 1.0
    assert "camera/block_yaw" in proc.stdout


def test_a_policy_with_only_turn_heads_gets_the_turn_table_alone(tmp_path):
    proc, results = probe_a_trained_run(tmp_path, turn=True, positions=False)
    assert "x-y error" not in proc.stdout  # no position head: no position table
    reach = results["reach"]
    assert "median_cm" not in reach
    assert 0.0 <= reach["camera_first_step_turn_median_deg"] <= 45.0


def test_turn_errors_fold_the_quarter_turn_symmetry():
    from grounding_probe import turn_errors

    from mmrobot.envs.privileged import yaw_target

    deg = np.radians
    true = np.stack([yaw_target(deg(a)) for a in (10.0, -40.0, 30.0)])
    pred = np.stack([yaw_target(deg(a)) for a in (14.0, 44.0, -30.0)])
    err, right = turn_errors(pred, true)
    # 44 and -40 are 6 degrees apart across the +-45 seam; 30 and -30 are 60 apart, folded 30
    np.testing.assert_allclose(err, [4.0, 6.0, 30.0], atol=1e-3)
    assert right.tolist() == [True, False, False]


def test_first_over_block_marks_each_episodes_arrival_over_the_block():
    from grounding_probe import first_over_block

    # x-y distance to the block per step: episode 0 arrives at its 3rd step and stays,
    # episode 1 never gets within 1.5 cm, episode 2 arrives at its 2nd and leaves again
    dist = [0.10, 0.05, 0.010, 0.005, 0.20, 0.016, 0.03, 0.014, 0.05, 0.001]
    episode_of = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    block_rel = np.zeros((len(dist), 3))
    block_rel[:, 0] = dist
    at = first_over_block(block_rel, episode_of)
    assert np.flatnonzero(at).tolist() == [2, 7]


def test_probe_refuses_a_checkpoint_without_camera_heads(tmp_path):
    from mmrobot.train import train

    files = (
        write_policy_toml(tmp_path / "policy.toml"),
        write_dataset(tmp_path / "d.h5"),
        tmp_path,
    )
    run = train(config(files, tmp_path / "run", steps=2), progress=False)
    proc = run_probe(run.checkpoint, files[1])
    assert proc.returncode != 0
    assert "has no camera heads" in proc.stderr and "encoder_aux" in proc.stderr
