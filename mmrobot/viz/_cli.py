"""``mmrobot view FILE``: a recording, a dataset episode or a results file in Rerun."""

from __future__ import annotations

import argparse
import time
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "view",
        help="view an MCAP recording, a dataset episode or an eval/run results JSON in Rerun",
        description="Write FILE as a Rerun recording (.rrd; open it with `rerun FILE.rrd`) or "
        "serve it to the Rerun web viewer: camera images, lidar points in the base frame, F/T "
        "and joint series, actions, attribution shares and the instruction on one timeline "
        "(docs/inspect.md).",
        epilog="examples:\n  mmrobot view run1.mcap\n"
        "  mmrobot view data/demos.h5 --episode 3 --out ep3.rrd\n"
        "  mmrobot view out/eval.json --episode 0 --serve",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="an .mcap recording, an .h5 dataset or a results .json")
    p.add_argument("--episode", type=int, default=0, help="episode of a dataset or results file")
    p.add_argument("--out", default=None, help="the .rrd to write (default: FILE with .rrd)")
    p.add_argument("--serve", action="store_true", help="serve the web viewer on localhost")
    p.add_argument("--port", type=int, default=9090, help="web viewer port with --serve")
    p.set_defaults(func=_view)


def _view(args: argparse.Namespace) -> int:
    from mmrobot.viz.rerun_view import view_file

    result = view_file(args.file, args.out, args.episode, args.serve, args.port)
    rows = sum(result.counts.values())
    print(f"{result.kind} {result.source}: {len(result.counts)} entities, {rows} rows")
    if not args.serve:
        print(f"wrote {result.out} (open it with: rerun {result.out})")
        return 0
    print(f"serving {result.url}; Ctrl-C stops")
    while True:  # the viewer is served from this process
        time.sleep(1.0)
