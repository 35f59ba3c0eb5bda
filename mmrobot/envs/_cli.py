"""``mmrobot collect``: scripted-expert demonstrations into an HDF5 dataset, expert reports."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mmrobot.core.errors import ConfigError
from mmrobot.envs._cli_dataset import register as register_dataset
from mmrobot.envs.experts import TURNS

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "collect",
        help="run the scripted experts in parallel workers into an HDF5 demonstration dataset",
        description="Run the scripted experts of the tabletop tasks in worker processes and "
        "write the successful episodes to one chunked, compressed HDF5 file. "
        "--report measures the experts' success rate per task instead; --list-tasks prints "
        "the task specs.",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        default=None,
        metavar="SPEC",
        help="task specs, e.g. pick 'push color=red zone=left' (default: all tasks)",
    )
    p.add_argument("--episodes", type=int, default=10, help="successful episodes to write")
    p.add_argument("--out", default=None, help="output HDF5 path (required unless --report)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (0: in-process)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    p.add_argument("--keep-failed", action="store_true", help="also store failed episodes")
    p.add_argument("--randomize", action="store_true", help="domain randomization on")
    p.add_argument(
        "--split", default="train", choices=("train", "heldout"), help="instruction phrasing set"
    )
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument(
        "--settle-steps",
        type=int,
        default=10,
        metavar="N",
        help="steps recorded after each success, the expert holding at the goal (default 10)",
    )
    p.add_argument(
        "--perturb",
        type=float,
        default=0.0,
        metavar="RATE",
        help="probability per tick of a random excursion that the expert then recovers from "
        "(recorded with the expert's labels; DART-style, docs/policy-trials.md); default 0: off",
    )
    p.add_argument(
        "--perturb-steps", type=int, default=4, metavar="N", help="ticks per excursion (default 4)"
    )
    p.add_argument(
        "--grasp-miss",
        type=float,
        default=0.0,
        metavar="SHARE",
        help="share of the pick, place and stack episodes whose first grasp is forced 1-3.5 cm "
        "off along the fingers' axis, the expert then recovering (default 0: off)",
    )
    p.add_argument(
        "--expert-turn",
        default="start",
        choices=TURNS,
        help="when the expert turns the tool to the block's faces: from the first tick "
        "(start, default) or once over the block, where the wrist camera shows its edges, "
        "waiting there until square (over_block) or going down while turning (descending)",
    )
    p.add_argument("--start-method", default="spawn", choices=("spawn", "forkserver"))
    p.add_argument(
        "--report",
        action="store_true",
        help="measure expert success per task over --seeds seeds and print a table",
    )
    p.add_argument("--seeds", type=int, default=200, help="seeds per task for --report")
    p.add_argument("--json", default=None, metavar="PATH", help="write the summary as JSON")
    p.add_argument("--list-tasks", action="store_true", help="print the task specs and exit")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_run)
    register_dataset(subparsers)


def _run(args: argparse.Namespace) -> int:
    from mmrobot.envs.tasks import TASKS, TaskSpec, list_tasks

    if args.list_tasks:
        print("\n".join(list_tasks()))
        return 0
    from mmrobot.envs.perturb import Perturbation

    tasks = tuple(args.tasks or TASKS)
    for t in tasks:
        TaskSpec.parse(t)
    perturbation = Perturbation(
        rate=args.perturb, steps=args.perturb_steps, grasp_miss=args.grasp_miss
    )
    if args.report:
        from mmrobot.envs.collect import expert_success

        res = expert_success(
            tasks,
            args.seeds,
            workers=args.workers,
            seed=args.seed,
            progress=not args.no_progress,
            start_method=args.start_method,
            randomize=args.randomize,
            perturbation=perturbation,
            expert_turn=args.expert_turn,
        )
        print_success_table(res)
        summary: dict[str, Any] = {"expert_success": res, "seeds": args.seeds}
    else:
        if not args.out:
            raise ConfigError("--out PATH is required (or use --report / --list-tasks)")
        from mmrobot.envs.collect import CollectConfig, collect

        cfg = CollectConfig(
            tasks=tasks,
            episodes=args.episodes,
            out=args.out,
            workers=args.workers,
            seed=args.seed,
            keep_failed=args.keep_failed,
            image_size=args.image_size,
            split=args.split,
            randomize=args.randomize,
            start_method=args.start_method,
            overwrite=args.overwrite,
            settle_steps=args.settle_steps,
            perturbation=perturbation,
            expert_turn=args.expert_turn,
        )
        summary = collect(cfg, progress=not args.no_progress)
        print(
            f"wrote {summary['episodes']} episodes to {summary['out']} "
            f"({summary['attempts']} attempts, {summary['seconds']:.1f} s, "
            f"{summary['episodes_per_min']:.1f} episodes/min)"
        )
        for task, (n, ok) in sorted(summary["per_task"].items()):
            print(f"  {task:6s} {ok}/{n} expert successes")
        if summary["episodes"] < args.episodes:
            print(f"warning: only {summary['episodes']} of {args.episodes} episodes succeeded")
            return 1
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


def _deg(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} deg"


def print_success_table(res: dict[str, dict[str, Any]]) -> None:
    """Print the expert success table (rich when available)."""
    rows = [
        (
            t,
            int(r["episodes"]),
            int(r["success"]),
            f"{100 * r['rate']:.1f}%",
            f"{r['mean_steps']:.1f}",
            int(r["blowups"]),
            *(_deg(r.get(k)) for k in ("turned_away_deg", "closing_off_deg")),
        )
        for t, r in res.items()
    ]
    head = (
        "task",
        "episodes",
        "successes",
        "rate",
        "mean steps",
        "blow-ups/errors",
        "turn while away",
        "off square at closing",
    )
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title="scripted expert success")
        for h in head:
            table.add_column(h, justify="right" if h != "task" else "left")
        for r in rows:
            table.add_row(*(str(x) for x in r))
        Console().print(table)
    except ImportError:
        print(" | ".join(head))
        for r in rows:
            print(" | ".join(str(x) for x in r))
