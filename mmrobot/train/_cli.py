"""Subcommands of ``mmrobot`` from the train package: train, plot (and eval, release)."""

from __future__ import annotations

import argparse
import importlib


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a policy by behaviour cloning on a demonstration dataset",
        description="Train the fusion policy on demonstrations. Under torchrun "
        "(torchrun --nproc_per_node N -m mmrobot.cli train CONFIG) it trains with DDP.",
        epilog="examples:\n  mmrobot train policies/train_default.toml\n"
        "  mmrobot train policies/train_default.toml steps=200 out=runs/try\n"
        "  mmrobot train policies/train_default.toml --resume\n"
        "  mmrobot train policies/train_default.toml steps=200 --overwrite",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("config", help="training config (TOML with a [train] table)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="override config keys")
    p.add_argument("--resume", action="store_true", help="continue the run in the config's `out`")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in the config's `out` (without this or --resume, a folder that "
        "holds a run is refused)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "plot",
        help="draw a run's loss and success curves, or an explained episode's attribution, "
        "to a PNG",
        epilog="examples:\n  mmrobot plot runs/default --out runs/default/curves.png\n"
        "  mmrobot plot eval.json --episode 2   (from mmrobot eval --explain --json eval.json)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "run",
        help="run folder (holds metrics.jsonl), or a results JSON of `mmrobot eval --explain` "
        "or `mmrobot run --explain` (draws the attribution shares over the episode's time)",
    )
    p.add_argument(
        "--episode",
        type=int,
        default=0,
        help="with a results JSON: which explained episode (0: the first)",
    )
    p.add_argument("--out", help="PNG path (default: RUN/curves.png, or RESULTS_attribution_N.png)")
    p.set_defaults(func=_plot)

    for name in ("mmrobot.train._cli_eval", "mmrobot.train._cli_release"):
        try:  # evaluation and the release live in their own modules
            importlib.import_module(name).register(sub)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise


def _train(args: argparse.Namespace) -> int:
    from mmrobot.train.config import load_train_config
    from mmrobot.train.trainer import train

    config = load_train_config(args.config).with_overrides(args.overrides)
    train(config, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


def _plot(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mmrobot.train.plot import plot_attribution, plot_run

    if Path(args.run).is_file() and args.run.endswith(".json"):
        out = plot_attribution(args.run, args.episode, args.out)
    else:
        out = plot_run(args.run, args.out)
    print(f"wrote {out}")
    return 0
