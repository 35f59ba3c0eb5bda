"""Recipe ablation: training variants from one config and one dataset, each evaluated closed
loop on the same episodes, in one table.

Each ``--variant NAME [KEY=VALUE ...]`` is the train config (``--config``) with the common
settings (``--steps``, ``--set``) and then its own overrides (any ``mmrobot train`` key:
``color_swap=0.5``, ``precision=bf16``, ``dagger.rounds=1``). DAgger and the evaluation
during training are off unless a variant turns them on, so the variants differ only where
they say. Every variant trains from the same seed on the same dataset, and its final
checkpoint is evaluated with the safety layer on the training phrasings (``--episodes`` per
task, the same seeds for every variant). Reported per variant: successes per task and in
all (95 % Wilson interval), training wall time, median samples/s and the final token loss.

At a few thousand steps closed-loop success is low and noisy (10 episodes per task give
intervals of about +-25 points), so ``--probe-dataset`` (recorded episodes the variants were
not trained on, e.g. seeds 40,000 on) also scores each checkpoint offline on two measures of
what the policy gets wrong, per task, with every recorded step as a sample:
``grounding_probe.py``'s camera-head x-y error at the episodes' first step (does the camera
find the named block; needs camera heads) and ``task_probe.py``'s pre-grasp x-y step error
under the episode's own instruction (pick, place and stack).

Each variant's result is kept in ``OUT/NAME/result.json``; a rerun with the same ``--out``
skips the variants that have one (``--fresh`` retrains them), so a long ablation survives
an interruption.

Usage:
    python benchmarks/recipe_ablation.py --dataset runs/release/demos.h5 --out runs/ablation
        --variant base --variant color color_swap=0.5 --variant relabel task_relabel=0.5
        [--config policies/train_default.toml] [--steps 6000] [--set KEY=VALUE ...]
        [--episodes 10] [--tasks pick place stack] [--workers 2] [--probe-dataset PROBE.h5]
        [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROBE_KEYS = ("camera_first_step_cm", "pregrasp_mm")


def run_variant(name: str, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """Train and evaluate one variant (or read its kept result)."""
    from mmrobot.train.config import load_train_config
    from mmrobot.train.eval import evaluate
    from mmrobot.train.trainer import train

    out = Path(args.out) / name
    kept = out / "result.json"
    if kept.is_file() and not args.fresh:
        return json.loads(kept.read_text())
    steps = 20 if args.quick else args.steps
    common = [
        f"dataset={json.dumps(str(Path(args.dataset).resolve()))}",
        f"out={json.dumps(str(out.resolve()))}",
        f"steps={steps}",
        f"save_every={steps}",
        "dagger.rounds=0",
        "eval.every=0",
    ]
    if args.quick:
        common += ["compile=false", "perception_steps=0", "batch_size=4"]
    cfg = load_train_config(args.config).with_overrides([*common, *args.set, *overrides])
    t0 = time.perf_counter()
    run = train(cfg, progress=False, overwrite=True)
    train_s = time.perf_counter() - t0
    rows = [json.loads(x) for x in (run.run_dir / "metrics.jsonl").read_text().splitlines()]
    speed = [r["samples_per_s"] for r in rows if r.get("kind") == "train" and "samples_per_s" in r]
    ev = evaluate(
        str(run.checkpoint),
        episodes=1 if args.quick else args.episodes,
        splits=("train",),
        tasks=tuple(args.tasks) if args.tasks else None,
        workers=0 if args.quick else args.workers,
        seed=args.seed,
        max_steps=10 if args.quick else None,
    )
    per_task = {}
    for key in ev.keys:
        s = ev.stats("train", key)
        per_task[key] = [s.successes, s.episodes]
    total = ev.stats("train")
    result = {
        "variant": name,
        "overrides": overrides,
        "steps": steps,
        "per_task": per_task,
        "success": [total.successes, total.episodes],
        "success_ci95": list(total.ci95),
        "train_wall_s": train_s,
        "samples_per_s": statistics.median(speed) if speed else None,
        "final_loss": run.final_loss,
        "eval_s": ev.seconds,
    }
    if args.probe_dataset:
        result["probes"] = probes(run.checkpoint, args.probe_dataset, args.quick)
    kept.write_text(json.dumps(result, indent=2))
    return result


def probes(checkpoint: Path, dataset: str, quick: bool) -> dict[str, dict[str, float]]:
    """Per task: the camera heads' first-step x-y error (cm; grounding_probe) and the
    pre-grasp step error under the episode's own words (mm; task_probe)."""
    import numpy as np
    from _common import episodes_by_task
    from grounding_probe import task_errors
    from task_probe import GRASPING, pregrasp_errors

    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.policies.checkpoint import load_checkpoint

    model = load_checkpoint(checkpoint).eval()
    demos = DemoDataset(dataset)
    out: dict[str, dict[str, float]] = {}
    for task, episodes in sorted(episodes_by_task(demos, 2 if quick else 20).items()):
        row: dict[str, float] = {}
        if model.camera_aux_heads:
            err, first, _ = task_errors(model, demos, episodes)
            row["camera_first_step_cm"] = float(np.median(err[first]))
        if task in GRASPING:
            row["pregrasp_mm"] = pregrasp_errors(model, demos, episodes, task)["xy_error_mm"]
        out[task] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", required=True, help="demonstrations (mmrobot collect)")
    p.add_argument("--out", required=True, help="the variants' runs and kept results")
    p.add_argument("--variant", nargs="+", action="append", required=True,
                   metavar="NAME [KEY=VALUE", help="a name, then its train-config overrides")  # fmt: skip
    p.add_argument("--config", default=str(ROOT / "policies" / "train_default.toml"))
    p.add_argument("--steps", type=int, default=6000, help="training steps of every variant")
    p.add_argument("--set", nargs="*", default=[], help="overrides for every variant")
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per task")
    p.add_argument("--tasks", nargs="*", help="tasks to evaluate (default: all five)")
    p.add_argument("--seed", type=int, default=0, help="first evaluation episode seed")
    p.add_argument("--workers", type=int, default=2, help="evaluation processes")
    p.add_argument("--probe-dataset", help="held-out episodes for the offline probes")
    p.add_argument("--fresh", action="store_true", help="retrain variants that have a result")
    p.add_argument(
        "--quick",
        action="store_true",
        help="20 steps, 1 episode of 10 ticks per task (a smoke run)",
    )
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args()
    names = [v[0] for v in args.variant]
    if len(set(names)) != len(names):
        p.error(f"variant names must differ, got {names}")
    load_before = os.getloadavg()[0]
    results = [run_variant(v[0], v[1:], args) for v in args.variant]
    load_after = os.getloadavg()[0]
    tasks = list(results[0]["per_task"])
    rows = []
    for r in results:
        s, n = r["success"]
        lo, hi = r["success_ci95"]
        rows.append(
            [
                r["variant"],
                " ".join(r["overrides"]) or "-",
                *(f"{r['per_task'][t][0]}/{r['per_task'][t][1]}" for t in tasks),
                f"{s}/{n}, {100 * s / n:.0f} % [{100 * lo:.0f}–{100 * hi:.0f}]",
                f"{r['train_wall_s'] / 60:.1f}",
                f"{r['samples_per_s']:.0f}" if r["samples_per_s"] else "-",
                f"{r['final_loss']:.3f}",
            ]
        )
    probed = [r for r in results if r.get("probes")]
    probe_rows = [
        [r["variant"], task, *(f"{v[k]:.2f}" if k in v else "-" for k in PROBE_KEYS)]
        for r in probed
        for task, v in r["probes"].items()
    ]
    print_table(
        f"recipe ablation: {results[0]['steps']} steps from {args.config} on {args.dataset}; "
        f"load {load_before:.2f} -> {load_after:.2f}",
        ["variant", "overrides", *tasks, "all", "train min", "samples/s", "final loss"],
        rows,
    )
    if probe_rows:
        print_table(
            f"offline probes on {args.probe_dataset} (median first-step camera error, mean "
            "pre-grasp step error under the episode's own words)",
            ["variant", "task", "camera first step (cm)", "pre-grasp step (mm)"],
            probe_rows,
        )
    write_json(
        args.json,
        {
            "bench": "recipe_ablation",
            "config": args.config,
            "dataset": args.dataset,
            "common": args.set,
            "load_avg": [load_before, load_after],
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
