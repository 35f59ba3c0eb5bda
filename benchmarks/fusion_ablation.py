"""Fusion ablation: mid vs early vs late fusion, trained on the same data with the same budget.

For each fusion mode the default policy config is trained by behaviour cloning on one
demonstration dataset (same seed, steps and batch size), then measured for forward latency
at batch 1 and evaluated closed-loop in simulation on the training phrasings.

Usage:
    python benchmarks/fusion_ablation.py --dataset data/demos.h5 [--steps 2500] [--episodes 10]
        [--workers 2] [--quick] [--json PATH]

The success figures mean something only with a training budget that makes the mid-fusion
policy succeed; the script prints the final training loss and token accuracy beside them so
that an under-trained comparison is visible as such.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def latency_ms(checkpoint: Path, repeats: int) -> float:
    """Median batch-1 forward time of a checkpoint on one observation of its own spec."""
    import numpy as np
    import torch

    from mmrobot.core import Observation
    from mmrobot.policies import TorchPolicy

    policy = TorchPolicy.from_checkpoint(checkpoint)
    rng = np.random.default_rng(0)
    values = {
        s.name: (
            rng.integers(0, 255, s.obs_shape, dtype=np.uint8)
            if s.dtype == "uint8"
            else rng.normal(size=s.obs_shape).astype(s.dtype)
        )
        for s in policy.config.streams
    }
    obs = Observation(0, values, {n: 0 for n in values}, {n: True for n in values})
    for _ in range(3):
        policy.act(obs, "pick up the red block")
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            policy.act(obs, "pick up the red block")
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT / "data" / "demos.h5"))
    parser.add_argument("--policy", default=str(ROOT / "policies" / "default.toml"))
    parser.add_argument("--steps", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--episodes", type=int, default=10, help="per task")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true", help="20 steps, 1 episode of reach")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    import torch

    from mmrobot.policies import load_checkpoint, load_policy_config
    from mmrobot.train.config import TrainConfig
    from mmrobot.train.eval import evaluate
    from mmrobot.train.trainer import train

    torch.set_num_threads(args.threads)
    steps = 20 if args.quick else args.steps
    episodes = 1 if args.quick else args.episodes
    tasks = ("reach",) if args.quick else None
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="fusion_ablation_"))
    base = load_policy_config(args.policy)
    rows, results = [], {}
    for fusion in ("mid", "early", "late"):
        config = base.replace(model=dataclasses.replace(base.model, fusion=fusion))
        cfg = TrainConfig(
            policy=args.policy,
            dataset=args.dataset,
            out=str(out / fusion),
            steps=steps,
            batch_size=args.batch_size,
            save_every=steps,
            log_every=max(1, steps // 10),
            threads=args.threads,
            seed=0,
            compile=not args.quick,  # compilation (~90 s) only pays off in a full run
        )
        # the ablation's own run folders: a rerun into the same --out replaces them
        run = train(cfg, progress=False, policy_config=config, overwrite=True)
        lat = latency_ms(run.checkpoint, repeats=20 if args.quick else 200)
        ev = evaluate(
            str(run.checkpoint),
            episodes=episodes,
            splits=("train",),
            tasks=tasks,
            workers=0 if args.quick else args.workers,
        )
        stats = ev.stats("train")
        lo, hi = stats.ci95
        results[fusion] = {
            "params": load_checkpoint(run.checkpoint).num_parameters(),
            "train_loss": run.final_loss,
            "token_accuracy": run.final_token_accuracy,
            "train_wall_s": run.wall_s,
            "latency_ms": lat,
            "success": stats.successes,
            "episodes": stats.episodes,
            "success_ci95": [lo, hi],
        }
        r = results[fusion]
        rows.append(
            [
                fusion,
                f"{r['params']:,}",
                f"{run.final_loss:.3f}",
                f"{run.final_token_accuracy:.3f}",
                f"{lat:.1f} ms",
                f"{stats.successes}/{stats.episodes} ({stats.rate:.0%}, CI {lo:.0%}-{hi:.0%})",
            ]
        )
    print_table(
        f"fusion ablation: {steps} steps x batch {args.batch_size}, {episodes} episodes/task",
        [
            "fusion",
            "parameters",
            "final loss",
            "token acc.",
            "forward b=1",
            "success (train phrasings)",
        ],
        rows,
    )
    write_json(
        args.json,
        {
            "bench": "fusion_ablation",
            "steps": steps,
            "batch_size": args.batch_size,
            "episodes_per_task": episodes,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
