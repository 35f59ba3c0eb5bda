"""Shared helpers for benchmarks: timing, machine description, table and JSON output."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """What the figures were measured on (imported on use: bench_train's v0 worker imports
    this module beside an older mmrobot that has no ``mmrobot.core.machine``)."""
    from mmrobot.core.machine import machine as describe

    return describe()


__all__ = [
    "machine",
    "median_time_per_call",
    "pin_to_one_core",
    "use_allowed_cores",
    "print_table",
    "write_json",
]


def pin_to_one_core() -> int | None:
    """Run on a single core (as the targets are stated); returns the core or None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def use_allowed_cores() -> int:
    """One torch thread per core this process may run on (``taskset`` narrows it; the
    machine's core count would oversubscribe a pinned probe); returns the count."""
    import torch

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def median_time_per_call(
    fn: Callable[[], object], calls: int, repeats: int
) -> tuple[float, list[float]]:
    """Median over ``repeats`` runs of the mean seconds per call of ``fn`` (``calls`` per run)."""
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        runs.append((time.perf_counter() - t0) / calls)
    return statistics.median(runs), runs


def print_table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """Print a table with rich when present, plain text otherwise."""
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for c in columns:
            table.add_column(c)
        for r in rows:
            table.add_row(*[str(x) for x in r])
        Console(width=160).print(table)
    except ImportError:
        print(title)
        print(" | ".join(columns))
        for r in rows:
            print(" | ".join(str(x) for x in r))


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps({"machine": machine(), **payload}, indent=2))
        print(f"wrote {path}")


def write_trained_probe_json(
    args: Any,
    bench: str,
    steps: int,
    split: tuple[int, int],
    load_avg: list[float],
    results: Any,
    **extra: Any,
) -> None:
    """``--json``'s file of a probe that trains on a dataset's episodes (``args.dataset``,
    ``args.lr``) and measures on held-out ones: ``split`` is (training, held-out) episodes;
    ``extra``: more top-level keys."""
    write_json(
        args.json,
        {
            "bench": bench,
            **extra,
            "dataset": args.dataset,
            "steps": steps,
            "lr": args.lr,
            "train_episodes": split[0],
            "val_episodes": split[1],
            "load_avg": load_avg,
            "results": results,
        },
    )


def probe_parser(description: str, checkpoint_help: str = "checkpoint folder") -> Any:
    """The arguments of the offline probes of a checkpoint on recorded episodes."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--checkpoint", required=True, help=checkpoint_help)
    parser.add_argument("--dataset", required=True, help="recorded episodes (mmrobot collect)")
    parser.add_argument("--episodes", type=int, default=20, help="successful episodes per task")
    parser.add_argument("--json", metavar="PATH")
    return parser


def write_probe_json(args: Any, bench: str, load_avg: float, results: Any) -> None:
    """``--json``'s file of an offline probe (:func:`probe_parser`'s arguments)."""
    write_json(
        args.json,
        {
            "bench": bench,
            "checkpoint": args.checkpoint,
            "dataset": args.dataset,
            "load_avg": load_avg,
            "results": results,
        },
    )


def episodes_by_task(demos: Any, per_task: int) -> dict[str, list[int]]:
    """The first ``per_task`` successful episodes of each task of a ``DemoDataset`` (tasks
    without one are left out); exits with a message when there are none at all."""
    by_task: dict[str, list[int]] = {}
    for e in demos.episodes():
        if e.success:
            chosen = by_task.setdefault(e.task.split()[0], [])
            if len(chosen) < per_task:
                chosen.append(e.index)
    if not by_task:
        raise SystemExit(f"{demos.path} has no successful episodes to probe")
    return by_task
