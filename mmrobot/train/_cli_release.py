"""``mmrobot release``: collect, train, DAgger, evaluate, model card, in one command."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "release",
        help="reproduce the released policy from scratch: collect, train (DAgger), evaluate, "
        "model card",
        description="Run the whole release from a release config: collect the demonstrations "
        "and a held-out slice, train with DAgger and evaluation during training, copy the "
        "chosen checkpoint into the release folder, evaluate it (and its ONNX exports) on every "
        "split, measure modality reliance, then write eval.json, metrics.jsonl, curves.png, "
        "release.json and MODEL_CARD.md, whose every figure is read from those files. "
        "See docs/release.md.",
        epilog="examples:\n  mmrobot release                       # policies/release.toml\n"
        "  mmrobot release policies/release.toml --resume\n"
        "  mmrobot release --toy                 # end-to-end smoke test, about a minute\n"
        "  mmrobot release collect.episodes_per_task=20 train.steps=1000 --out runs/try\n"
        "  mmrobot release --check policies/release",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "config",
        nargs="?",
        default=None,
        help="release config (default: policies/release.toml)",
    )
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override config keys: collect.episodes_per_task=4, evaluate.episodes=5, "
        "train.steps=100 (train.* keys other than config/overrides change the train config)",
    )
    p.add_argument("--out", metavar="DIR", help="release folder (default: [release] out)")
    p.add_argument("--work", metavar="DIR", help="work folder (default: [release] work)")
    p.add_argument(
        "--toy",
        action="store_true",
        help="end-to-end smoke test: 2 episodes per task, a few steps, one DAgger round, a "
        "tiny network, written to a temporary folder unless --out is given",
    )
    p.add_argument("--resume", action="store_true", help="skip the stages whose output is complete")
    p.add_argument(
        "--check",
        metavar="DIR",
        help="only check that DIR/MODEL_CARD.md matches DIR/eval.json, metrics.jsonl and "
        "release.json",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mmrobot.train.release import (
        DEFAULT_CONFIG,
        TOY_OVERRIDES,
        ModelCardMismatch,
        check_model_card,
        load_release_config,
        run_release,
    )

    if args.check:
        try:
            check_model_card(args.check)
        except ModelCardMismatch as e:
            print(f"mmrobot release: {e}", file=sys.stderr)
            return 1
        print(f"{args.check}: MODEL_CARD.md matches eval.json, metrics.jsonl and release.json")
        return 0
    overrides = list(args.overrides)
    config_path = args.config
    if config_path is not None and "=" in config_path:  # no config given, only overrides
        overrides.insert(0, config_path)
        config_path = None
    config_path = config_path or DEFAULT_CONFIG
    config = load_release_config(config_path)
    config = config.with_overrides([*(TOY_OVERRIDES if args.toy else ()), *overrides])
    words = ["mmrobot", "release", config_path, *(["--toy"] if args.toy else []), *overrides]
    out = run_release(
        config,
        out=args.out,
        work=args.work,
        toy=args.toy,
        resume=args.resume,
        progress=not args.no_progress,
        command=shlex.join(words),
    )
    print(f"release written to {out}")
    return 0
