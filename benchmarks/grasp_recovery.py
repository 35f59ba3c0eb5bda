"""Does the scripted expert recover from a learner's typical miss? A probe of the expert alone.

v11's first grasps miss when the TCP is off along the fingers' closing axis by more than the
open pads clear the block: a pad comes down on the block's top and the gripper closes about
3 cm high (docs/policy-trials.md, "Why a miss misses"). Data that teaches the correction needs an
expert that recovers from exactly those states. Per task and seed this probe lets the expert
run until its first ``descend``, then drives that descent ``--offset`` metres off along the
fingers' axis and closes the gripper there (6 ticks), as the policy does, and hands the
episode back to the expert (:class:`mmrobot.envs.perturb.OffAxisGrasp`; the expert is a pure
function of the state: :func:`mmrobot.envs.experts.expert_plan`).
It reports how many forced closings miss the block, how high they closed, and how many of
those episodes the expert then completes.

Usage: python benchmarks/grasp_recovery.py [--tasks pick place stack] [--seeds 10]
           [--offset 0.035] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_table, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["pick", "place", "stack"])
    parser.add_argument("--seeds", type=int, default=10, help="episodes per task (seeds 0..)")
    parser.add_argument("--offset", type=float, default=0.035, help="metres along the fingers")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mmrobot.envs  # noqa: F401 - picks a headless GL backend before mujoco is imported
    from mmrobot.envs.collect import Job, run_expert_episode
    from mmrobot.envs.perturb import GRASP_TASKS, OffAxisGrasp

    if any(t.split()[0] not in GRASP_TASKS for t in args.tasks):
        names = f"{', '.join(GRASP_TASKS[:-1])} and {GRASP_TASKS[-1]}"
        parser.error(f"--tasks: only {names} grasp a block")
    from mmrobot.envs.tabletop import TabletopEnv

    load_before = os.getloadavg()[0]
    env = TabletopEnv(render_mode=None)
    rows, results = [], {}
    for task in args.tasks:
        episodes = []
        for seed in range(args.seeds):
            grasp = OffAxisGrasp(env, args.offset)
            ep = run_expert_episode(env, Job(task, seed), record=False, executor=grasp)
            episodes.append({"seed": seed, "success": bool(ep.success), **(grasp.outcome or {})})
        closed = [e for e in episodes if "held" in e]
        misses = [e for e in closed if not e["held"]]
        recovered = sum(e["success"] for e in misses)
        heights = [e["dz_cm"] for e in misses]
        results[task] = {"episodes": episodes, "misses": len(misses), "recovered": recovered}
        rows.append(
            [
                task,
                args.seeds,
                len(closed),
                len(misses),
                f"{np.median(heights):+.1f}" if heights else "-",
                recovered,
                sum(e["success"] for e in episodes),
            ]
        )
    env.close()
    print_table(
        f"the expert after a forced first closing {100 * args.offset:.1f} cm off along the "
        f"fingers' axis (load {load_before:.2f} -> {os.getloadavg()[0]:.2f})",
        [
            "task",
            "episodes",
            "forced closings",
            "of them miss",
            "miss height (cm, median)",
            "misses the expert completes",
            "episodes completed",
        ],
        rows,
    )
    write_json(
        args.json,
        {
            "bench": "grasp_recovery",
            "offset_m": args.offset,
            "seeds": args.seeds,
            "machine": machine(),
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
