"""How far the named block lies from the gripper and from its goal, per task and split.

An evaluation split can ask for motions no demonstration made. In ``instruction_swap`` the
scene is the task's, but the instruction names another block on the table: a push block
then lies wherever the layout put a distractor, not at the zone's edge where every
demonstration's push block starts. This prints, for the evaluation's own episodes (the same
seeds and the same reset as ``mmrobot eval``), the named block's horizontal distance from
the tool (TCP) and from its goal (:func:`mmrobot.envs.tasks.goal_position`: push, the zone;
place, the bin; stack, the base block; reach and pick, a point above the block itself), and
how many of a split's episodes lie beyond the farthest of the ``train`` split's.

No policy runs: each episode is reset (and retargeted, for ``instruction_swap``) only.

Usage:
    python benchmarks/task_geometry.py [--tasks push ...] [--episodes 20] [--seed 0]
        [--splits train,instruction_swap] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _common import print_table, write_json

from mmrobot.envs.privileged import privileged_state
from mmrobot.envs.tabletop import EnvConfig, TabletopEnv
from mmrobot.envs.tasks import TASKS
from mmrobot.train.eval import swap_instruction_target

SPLITS = ("train", "instruction_swap")


def distances(env: TabletopEnv, task: str, split: str, seeds: range) -> dict[str, list[float]]:
    """Per episode: the named block's horizontal distance (m) from the TCP and from its goal,
    after the reset ``mmrobot eval`` makes for ``split`` (the first state of the episode)."""
    out: dict[str, list[float]] = {"tcp_to_block": [], "block_to_goal": []}
    for seed in seeds:
        env.reset(seed=seed, options={"task": task})
        if split == "instruction_swap":
            swap_instruction_target(env, seed)
        s = privileged_state(env)
        out["tcp_to_block"].append(float(np.linalg.norm(s.block_rel[:2])))
        out["block_to_goal"].append(float(np.linalg.norm((s.goal_rel - s.block_rel)[:2])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--episodes", type=int, default=20, help="episodes per task per split")
    ap.add_argument("--seed", type=int, default=0, help="episode k is reset with seed SEED+k")
    ap.add_argument("--splits", default=",".join(SPLITS), help="comma-separated")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    splits = [s for s in args.splits.split(",") if s]
    for split in splits:
        if split not in SPLITS:
            raise SystemExit(f"--splits: {split!r} is not one of {', '.join(SPLITS)}")
    seeds = range(args.seed, args.seed + args.episodes)
    t0 = time.perf_counter()
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    rows = []
    env = TabletopEnv(EnvConfig())  # one env: every reset lays its episode out anew
    for task in args.tasks:
        results[task] = {s: distances(env, task, s, seeds) for s in splits}
        train = results[task].get("train")
        for split, d in results[task].items():
            row = [task, split]
            for key in ("tcp_to_block", "block_to_goal"):
                v = np.asarray(d[key])
                row.append(f"{np.median(v):.2f} ({v.min():.2f}-{v.max():.2f})")
                if train is not None and split != "train":
                    beyond = int((v > max(train[key]) + 1e-9).sum())
                    row.append(f"{beyond}/{len(v)}")
                else:
                    row.append("-")
            rows.append(row)
    env.close()
    elapsed = time.perf_counter() - t0
    print_table(
        f"named block's horizontal distance (m), median (min-max), seeds {seeds.start}-"
        f"{seeds.stop - 1}; 'beyond': episodes farther than any of the train split's",
        ["task", "split", "TCP to block", "beyond", "block to goal", "beyond"],
        rows,
    )
    load = os.getloadavg()[0]
    print(f"{elapsed:.0f} s, load average {load:.1f}")
    write_json(
        args.json,
        {
            "bench": "task_geometry",
            "load_avg": load,
            "seed": args.seed,
            "episodes": args.episodes,
            "seconds": elapsed,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
