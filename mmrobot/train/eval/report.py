"""Reporting an evaluation: its JSON document, its rich tables, and the progress bar of a
run."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrobot.train.eval.settings import EVAL_FORMAT_VERSION

if TYPE_CHECKING:
    from mmrobot.train.eval.episode import EpisodeResult
    from mmrobot.train.eval.results import EvalResult

__all__ = ["EvalProgress", "result_document", "result_tables", "write_result_json"]

# --------------------------------------------------------------------------- JSON


def result_document(result: EvalResult) -> dict[str, Any]:
    """The JSON document of an evaluation (see ``docs/evaluation.md``)."""
    doc: dict[str, Any] = {
        "format_version": EVAL_FORMAT_VERSION,
        "policy": result.policy,
        "settings": asdict(result.settings),
        "splits": list(result.splits),
        "tasks": list(result.keys),
        "results": {
            s: {k: st.to_dict() for k, st in rows.items()} for s, rows in result.per_split().items()
        },
        "safety": {
            s: {
                k: result.safety_stats(s, None if k == "all" else k).to_dict()
                for k in (*result.keys, "all")
            }
            for s in result.splits
        },
        "errors": len(result.errors),
        "seconds": result.seconds,
    }
    if result.lines is not None:
        doc["lines"] = [
            {
                "line": ln.line,
                "task": ln.task,
                "instruction": ln.instruction,
                "split": s,
                **result.line_stats(s, ln.line).to_dict(),
            }
            for s in result.splits
            for ln in result.lines
        ]
    doc["episodes"] = [asdict(e) for e in result.sorted_episodes()]
    return doc


def write_result_json(result: EvalResult, path: str | Path) -> Path:
    """Write :func:`result_document` to ``path`` (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result_document(result), indent=1), encoding="utf-8")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- tables


def result_tables(result: EvalResult) -> list[Any]:
    """Rich tables: success per task and split; per line for an instructions file."""
    from rich.table import Table

    t = Table(title="success rate (95% Wilson CI)", caption=f"policy: {result.policy}")
    t.add_column("task")
    for s in result.splits:
        t.add_column(s, justify="right")
    rows = result.per_split()
    for k in (*result.keys, "all"):
        t.add_row(k, *(rows[s][k].cell() for s in result.splits), end_section=k == result.keys[-1])
    out = [t]
    if result.lines is not None:
        lt = Table(title="instructions file, per line")
        lt.add_column("line", justify="right")
        lt.add_column("task")
        lt.add_column("instruction")
        for s in result.splits:
            lt.add_column(s, justify="right")
        for ln in result.lines:
            lt.add_row(
                str(ln.line),
                ln.task,
                ln.instruction,
                *(result.line_stats(s, ln.line).cell() for s in result.splits),
            )
        out.append(lt)
    out.extend(_safety_tables(result))
    return out


def _safety_tables(result: EvalResult) -> list[Any]:
    from rich.table import Table

    if not result.settings.safety:
        off = Table(title="safety layer off (--no-safety)")
        off.add_column("note")
        off.add_row("no limits were applied: these rates do not describe `mmrobot run`")
        return [off]
    t = Table(
        title="safety layer: events / held ticks per episode (mean)",
        caption="events: every clamp or hold, one per joint or axis and tick; held: ticks "
        "the arm held still",
    )
    t.add_column("task")
    for s in result.splits:
        t.add_column(s, justify="right")
    stats = {
        k: {s: result.safety_stats(s, None if k == "all" else k) for s in result.splits}
        for k in (*result.keys, "all")
    }
    for k, row in stats.items():
        t.add_row(k, *(row[s].cell() for s in result.splits), end_section=k == result.keys[-1])
    reasons = sorted(
        {r for s in result.splits for r in stats["all"][s].by_reason},
        key=lambda r: (-sum(stats["all"][s].by_reason.get(r, 0) for s in result.splits), r),
    )
    rt = Table(title="safety events by reason (total over episodes)")
    rt.add_column("reason")
    for s in result.splits:
        rt.add_column(s, justify="right")
    for r in reasons:
        rt.add_row(r, *(str(stats["all"][s].by_reason.get(r, 0)) for s in result.splits))
    if not reasons:
        rt.add_row("(none)", *("0" for _ in result.splits))
    return [t, rt]


# --------------------------------------------------------------------------- progress


class EvalProgress:
    """A rich progress bar of finished episodes on stderr (or nothing when disabled)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self._p: Any = None
        self._done = self._ok = 0
        if enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._p = Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
            )

    def __enter__(self) -> EvalProgress:
        if self._p is not None:
            self._p.start()
            self._task = self._p.add_task("episodes", total=self.total)
        return self

    def advance(self, ep: EpisodeResult) -> None:
        self._done += 1
        self._ok += int(ep.success)
        if self._p is not None:
            self._p.update(self._task, advance=1, description=f"episodes ({self._ok} successes)")

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.stop()
