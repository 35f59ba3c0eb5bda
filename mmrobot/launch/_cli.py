"""Subcommands of ``mmrobot`` from the launch package: doctor."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check rendering, system libraries, serial ports and cameras, and say how to fix",
        description="Check this machine for what mmrobot needs. Exit code 1 when a check fails.",
        epilog="example: mmrobot doctor",
    )
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from mmrobot.launch.doctor import run_checks

    results = run_checks()
    table = Table(title="mmrobot doctor")
    for col in ("check", "status", "found", "fix"):
        table.add_column(col, overflow="fold")
    style = {"ok": "green", "warn": "yellow", "fail": "red"}
    for r in results:
        table.add_row(r.name, f"[{style[r.status]}]{r.status}[/]", r.found, r.fix)
    Console().print(table)
    return 1 if any(r.status == "fail" for r in results) else 0
