"""``mmrobot dataset export``: a demonstration dataset in another tool's format."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["FORMATS", "register"]

#: Export formats: name -> what it is.
FORMATS = {"lerobot": "a LeRobotDataset v3 (parquet frames, MP4 videos, meta/info.json)"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "dataset",
        help="export a demonstration dataset (HDF5) to another format (LeRobot)",
        description="Work on demonstration datasets written by `mmrobot collect`.",
    )
    sub = p.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)
    ex = sub.add_parser(
        "export",
        help="write a dataset in another tool's format",
        description="Write the episodes of an HDF5 demonstration dataset in another format. "
        "lerobot: a LeRobotDataset v3 folder (docs/inspect.md says what goes where).",
        epilog="examples:\n  mmrobot dataset export data/demos.h5 --format lerobot out/demos_lerobot",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ex.add_argument("dataset", help="HDF5 dataset from mmrobot collect")
    ex.add_argument("out", help="output folder (must not exist or be empty)")
    ex.add_argument("--format", choices=sorted(FORMATS), required=True)
    ex.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    ex.add_argument("--no-progress", action="store_true")
    ex.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from mmrobot.envs.lerobot import export_lerobot

    def show(done: int, total: int) -> None:
        print(f"\r{done}/{total} episodes", end="", flush=True)

    result = export_lerobot(
        args.dataset,
        args.out,
        overwrite=args.overwrite,
        progress=None if args.no_progress else show,
    )
    if not args.no_progress:
        print()
    print(
        f"wrote {result.root}: LeRobotDataset v3.0, {result.episodes} episodes, "
        f"{result.frames} frames at {result.fps} fps, videos {list(result.video_keys)}; "
        f"measured stamps within {result.max_time_error_s * 1e3:.2f} ms of frame_index / fps"
    )
    return 0
