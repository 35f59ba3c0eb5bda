"""``mmrobot eval``: closed-loop evaluation of a policy in simulation (see docs/evaluation.md).

``register(subparsers)`` adds the subcommand; ``mmrobot/train/_cli.py`` calls it. For use
before that wiring exists: ``python -m mmrobot.train._cli_eval --policy CKPT ...``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from mmrobot.core.errors import ConfigError

__all__ = ["register", "main"]


def _decay(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'none', got {text!r}") from e


def _comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [v.strip() for v in text.split(",") if v.strip()]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a policy closed-loop in simulation: success per task with 95%% CIs",
        description="Run a policy closed-loop in the MuJoCo tabletop simulation, through the "
        "same synchronizer, temporal ensembling, Cartesian controller and safety layer as "
        "`mmrobot run`, in parallel worker processes. Reports the success rate per task with a "
        "95% Wilson interval for training phrasings, held-out phrasings, swapped instructions "
        "and each modality removed in turn, or for your own instructions (--instructions), "
        "and the safety events per episode by reason.",
    )
    add_arguments(p)
    p.set_defaults(func=run)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mmrobot.train.eval import DEFAULT_SPLITS, SPLIT_NAMES

    p.add_argument(
        "--policy",
        metavar="PATH",
        help="checkpoint folder (config.json + model.safetensors), exported ONNX model "
        "(.onnx or its folder), or 'expert' for the scripted experts (a harness check)",
    )
    p.add_argument(
        "--list-tasks",
        action="store_true",
        help="print every task spec, one per line, as --instructions files take them, and exit",
    )
    p.add_argument(
        "--instructions",
        metavar="FILE",
        help='JSON Lines of {"task": TASK_SPEC, "instruction": TEXT} to evaluate instead of '
        "generated instructions",
    )
    p.add_argument(
        "--tasks",
        nargs="+",
        metavar="SPEC",
        help="task specs, e.g. reach 'pick color=red' (default: every task, random blocks)",
    )
    p.add_argument(
        "--splits",
        default=None,
        metavar="LIST",
        help=f"comma-separated splits from {','.join(SPLIT_NAMES)} "
        f"(default: {','.join(DEFAULT_SPLITS)}; with --instructions: instructions)",
    )
    p.add_argument("--episodes", type=int, default=10, help="episodes per task per split")
    p.add_argument("--seed", type=int, default=0, help="episode k is reset with seed SEED+k")
    p.add_argument("--max-steps", type=int, default=None, help="episode length limit")
    p.add_argument("--workers", type=int, default=1, help="worker processes (0: in-process)")
    p.add_argument(
        "--lockstep",
        type=int,
        default=1,
        help="episodes each worker runs side by side, their policy calls batched (a "
        "checkpoint or ONNX model; no videos, no --explain; default 1)",
    )
    p.add_argument("--start-method", default="spawn", choices=("spawn", "forkserver"))
    p.add_argument(
        "--replan-every",
        type=int,
        default=1,
        metavar="N",
        help="request a new action chunk every N control ticks (temporal ensembling combines "
        "overlapping chunks)",
    )
    p.add_argument(
        "--ensemble-decay",
        type=_decay,
        default=0.1,
        metavar="M",
        help="temporal ensembling weight exp(-M*k), k=0 for the oldest chunk; 'none': newest "
        "chunk only",
    )
    p.add_argument("--json", metavar="OUT", help="write results (per task, line, episode) here")
    p.add_argument("--video", metavar="DIR", help="write episode videos to DIR/<split>/")
    p.add_argument("--video-format", default="mp4", choices=("mp4", "gif"))
    p.add_argument(
        "--video-episodes",
        type=int,
        default=1,
        metavar="K",
        help="videos of the first K episodes of each task (or line) and split",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="record which inputs each decision attended to (attention rollout; torch "
        "checkpoints only) into each episode of --json, and draw it on the --video frames",
    )
    p.add_argument("--device", default="cpu", help="torch device of the policy in each worker")
    p.add_argument(
        "--no-safety",
        action="store_true",
        help="for comparison only: the env applies the policy's end-effector actions itself, "
        "without the safety layer that `mmrobot run` always applies (default: the layer is on, "
        "with a launch file's default limits)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import mmrobot.train.eval as ev

    if args.list_tasks:
        print("\n".join(ev.all_task_specs()))
        return 0
    if not args.policy:
        raise ConfigError("--policy PATH is required (or --list-tasks)")
    overrides: dict[str, Any] = {}
    if args.splits is not None:
        overrides["splits"] = tuple(_comma_list(args.splits))
    settings = ev.EvalSettings(
        episodes=args.episodes,
        seed=args.seed,
        max_steps=args.max_steps,
        tasks=tuple(args.tasks) if args.tasks else None,
        replan_every=args.replan_every,
        ensemble_decay=args.ensemble_decay,
        workers=args.workers,
        lockstep=args.lockstep,
        start_method=args.start_method,
        video_dir=args.video,
        video_format=args.video_format,
        video_episodes=args.video_episodes,
        device=args.device,
        safety=not args.no_safety,
        explain=args.explain,
    )
    if args.instructions and args.tasks:
        raise ConfigError("--tasks and --instructions exclude each other: the file names tasks")
    result = ev.evaluate(
        args.policy,
        settings,
        instructions=args.instructions,
        progress=not args.no_progress,
        **overrides,
    )
    from rich.console import Console

    console = Console()
    if not console.is_terminal:  # a file or pipe: do not wrap the table at 80 columns
        console = Console(width=200)
    for table in result.tables():
        console.print(table)
    if args.json:
        path = result.write_json(args.json)
        console.print(f"results written to {path}")
    videos = [e.video for e in result.episodes if e.video]
    if videos:
        console.print(f"{len(videos)} videos written under {args.video}")
    errors = result.errors
    if errors:
        print(
            f"mmrobot eval: {len(errors)} of {len(result.episodes)} episodes crashed; first: "
            f"[{errors[0].split} {errors[0].task} seed {errors[0].seed}] {errors[0].error}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (``python -m mmrobot.train._cli_eval``), same exit codes as mmrobot."""
    parser = argparse.ArgumentParser(prog="mmrobot eval")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ConfigError, FileNotFoundError) as e:
        print(f"mmrobot eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
