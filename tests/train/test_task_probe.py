"""benchmarks/task_probe.py scores the pre-grasp step under each grasping task's words."""

from __future__ import annotations

import json
import math

from test_grounding_probe import run_probe
from test_trainer import config, write_dataset, write_policy_toml


def test_probe_reads_each_pick_episode_with_pick_and_place_words(tmp_path):
    from mmrobot.train import train

    data = write_dataset(
        tmp_path / "d.h5",
        aux=True,
        task="pick color=red size=small",
        instructions=("pick up the small red block", "lift the small red cube"),
        held_from=5,
    )
    files = (write_policy_toml(tmp_path / "policy.toml"), data, tmp_path)
    run = train(config(files, tmp_path / "run", steps=2), progress=False)
    out = tmp_path / "probe.json"
    proc = run_probe(run.checkpoint, data, "--episodes", "3", "--json", str(out),
                     script="task_probe.py")  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pick = json.loads(out.read_text())["results"]["pick"]
    assert sorted(pick) == ["pick", "place"]
    for r in pick.values():
        assert r["samples"] == 3 * 5  # the steps before the grasp of 3 episodes
        assert math.isfinite(r["xy_error_mm"]) and r["xy_error_mm"] >= 0
        assert math.isfinite(r["toward_bin_mm"])
