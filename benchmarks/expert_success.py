"""Scripted expert success rate per tabletop task (target >= 95% over 200 seeds each).

Usage:
    python benchmarks/expert_success.py [--seeds 200] [--workers 1] [--json PATH] [--quick]
        [--expert-turn start|over_block|descending]

--quick runs 4 seeds per task (< 30 s); the full measurement runs 200 seeds per task.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

from mmrobot.envs._cli import print_success_table
from mmrobot.envs.collect import expert_success
from mmrobot.envs.experts import TURNS
from mmrobot.envs.tasks import TASKS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--randomize", action="store_true", help="domain randomization on")
    ap.add_argument(
        "--expert-turn",
        default="start",
        choices=TURNS,
        help="when the expert turns the tool to the block's faces",
    )
    args = ap.parse_args()
    seeds = 4 if args.quick else args.seeds
    t0 = time.perf_counter()
    res = expert_success(
        args.tasks,
        seeds,
        workers=args.workers,
        progress=True,
        randomize=args.randomize,
        expert_turn=args.expert_turn,
    )
    elapsed = time.perf_counter() - t0
    print_success_table(res)
    print(
        f"{seeds} seeds per task, {elapsed:.0f} s, {args.workers} worker(s), {platform.processor() or platform.machine()}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "seeds": seeds,
                    "randomize": args.randomize,
                    "expert_turn": args.expert_turn,
                    "seconds": elapsed,
                    "results": res,
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
