"""Evaluation results: success rates with Wilson intervals, safety statistics, the
whole result with its tables and JSON (see :mod:`mmrobot.train.evaluate`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmrobot.train.eval_episode import EpisodeResult
from mmrobot.train.eval_setup import _Z95, EVAL_FORMAT_VERSION, EvalSettings, InstructionLine

if TYPE_CHECKING:
    pass

# --------------------------------------------------------------------------- statistics


def wilson_interval(successes: int, n: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927).

    Args:
        successes: number of successes, ``0 <= successes <= n``.
        n: number of trials; ``n = 0`` gives the uninformative ``(0, 1)``.
        z: standard normal quantile (1.96 for 95 %).

    Returns:
        (low, high) bounds in [0, 1].
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class SuccessStats:
    """Successes over episodes with the rate and its 95 % Wilson interval."""

    episodes: int
    successes: int

    @property
    def rate(self) -> float:
        return self.successes / self.episodes if self.episodes else float("nan")

    @property
    def ci95(self) -> tuple[float, float]:
        return wilson_interval(self.successes, self.episodes)

    def to_dict(self) -> dict[str, Any]:
        lo, hi = self.ci95
        return {
            "episodes": self.episodes,
            "successes": self.successes,
            "rate": None if self.episodes == 0 else self.rate,
            "ci95": [lo, hi],
        }

    def cell(self) -> str:
        """Short table text: ``7/10 70% [40-89]``."""
        if not self.episodes:
            return "-"
        lo, hi = self.ci95
        return f"{self.successes}/{self.episodes} {100 * self.rate:.0f}% [{100 * lo:.0f}-{100 * hi:.0f}]"


@dataclass(frozen=True)
class SafetyStats:
    """What the safety layer did over episodes: held ticks and events per reason."""

    episodes: int
    ticks: int
    held_ticks: int
    by_reason: dict[str, int]

    @property
    def events(self) -> int:
        return sum(self.by_reason.values())

    def to_dict(self) -> dict[str, Any]:
        n = max(self.episodes, 1)
        return {
            "episodes": self.episodes,
            "ticks": self.ticks,
            "events": self.events,
            "events_per_episode": self.events / n,
            "held_ticks": self.held_ticks,
            "held_ticks_per_episode": self.held_ticks / n,
            "held_fraction": self.held_ticks / self.ticks if self.ticks else 0.0,
            "by_reason": dict(self.by_reason),
        }

    def cell(self) -> str:
        """Short table text: ``12.5 ev, 0.5 held``."""
        if not self.episodes:
            return "-"
        n = self.episodes
        return f"{self.events / n:.1f} ev, {self.held_ticks / n:.1f} held"


# --------------------------------------------------------------------------- results


@dataclass
class EvalResult:
    """Episodes of an evaluation and their per-split, per-task success statistics.

    Attributes:
        policy: what was evaluated (path or description).
        settings: how.
        splits: splits in run order.
        keys: table rows in order (task specs, or task names for an instructions file).
        episodes: every episode's result.
        lines: the instructions file's lines, when one was used.
        seconds: wall time.
    """

    policy: str
    settings: EvalSettings
    splits: tuple[str, ...]
    keys: tuple[str, ...]
    episodes: list[EpisodeResult] = field(default_factory=list)
    lines: list[InstructionLine] | None = None
    seconds: float = 0.0

    def stats(self, split: str, key: str | None = None) -> SuccessStats:
        """Successes of one split, for one row (task) or all rows (``key=None``)."""
        eps = [e for e in self.episodes if e.split == split and (key is None or e.key == key)]
        return SuccessStats(len(eps), sum(e.success for e in eps))

    def line_stats(self, split: str, line: int) -> SuccessStats:
        eps = [e for e in self.episodes if e.split == split and e.line == line]
        return SuccessStats(len(eps), sum(e.success for e in eps))

    @property
    def errors(self) -> list[EpisodeResult]:
        return [e for e in self.episodes if e.error is not None]

    def safety_stats(self, split: str, key: str | None = None) -> SafetyStats:
        """Safety events and held ticks of one split, for one row or all rows."""
        eps = [e for e in self.episodes if e.split == split and (key is None or e.key == key)]
        by_reason: dict[str, int] = {}
        for e in eps:
            for reason, n in e.safety_events.items():
                by_reason[reason] = by_reason.get(reason, 0) + n
        return SafetyStats(
            episodes=len(eps),
            ticks=sum(e.steps for e in eps),
            held_ticks=sum(e.holds for e in eps),
            by_reason=dict(sorted(by_reason.items(), key=lambda kv: (-kv[1], kv[0]))),
        )

    def per_split(self) -> dict[str, dict[str, SuccessStats]]:
        """split -> row -> stats, with an ``"all"`` row per split."""
        return {
            s: {**{k: self.stats(s, k) for k in self.keys}, "all": self.stats(s)}
            for s in self.splits
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see ``docs/evaluation.md``)."""
        doc: dict[str, Any] = {
            "format_version": EVAL_FORMAT_VERSION,
            "policy": self.policy,
            "settings": asdict(self.settings),
            "splits": list(self.splits),
            "tasks": list(self.keys),
            "results": {
                s: {k: st.to_dict() for k, st in rows.items()}
                for s, rows in self.per_split().items()
            },
            "safety": {
                s: {
                    k: self.safety_stats(s, None if k == "all" else k).to_dict()
                    for k in (*self.keys, "all")
                }
                for s in self.splits
            },
            "errors": len(self.errors),
            "seconds": self.seconds,
        }
        if self.lines is not None:
            doc["lines"] = [
                {
                    "line": ln.line,
                    "task": ln.task,
                    "instruction": ln.instruction,
                    "split": s,
                    **self.line_stats(s, ln.line).to_dict(),
                }
                for s in self.splits
                for ln in self.lines
            ]
        doc["episodes"] = [asdict(e) for e in self._sorted_episodes()]
        return doc

    def _sorted_episodes(self) -> list[EpisodeResult]:
        split_i = {s: i for i, s in enumerate(self.splits)}
        key_i = {k: i for i, k in enumerate(self.keys)}
        return sorted(
            self.episodes,
            key=lambda e: (split_i.get(e.split, 99), key_i.get(e.key, 99), e.line or 0, e.seed),
        )

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        tmp.replace(path)
        return path

    def tables(self) -> list[Any]:
        """Rich tables: success per task and split; per line for an instructions file."""
        from rich.table import Table

        t = Table(title="success rate (95% Wilson CI)", caption=f"policy: {self.policy}")
        t.add_column("task")
        for s in self.splits:
            t.add_column(s, justify="right")
        rows = self.per_split()
        for k in (*self.keys, "all"):
            t.add_row(k, *(rows[s][k].cell() for s in self.splits), end_section=k == self.keys[-1])
        out = [t]
        if self.lines is not None:
            lt = Table(title="instructions file, per line")
            lt.add_column("line", justify="right")
            lt.add_column("task")
            lt.add_column("instruction")
            for s in self.splits:
                lt.add_column(s, justify="right")
            for ln in self.lines:
                lt.add_row(
                    str(ln.line),
                    ln.task,
                    ln.instruction,
                    *(self.line_stats(s, ln.line).cell() for s in self.splits),
                )
            out.append(lt)
        out.extend(self._safety_tables())
        return out

    def _safety_tables(self) -> list[Any]:
        from rich.table import Table

        if not self.settings.safety:
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
        for s in self.splits:
            t.add_column(s, justify="right")
        stats = {
            k: {s: self.safety_stats(s, None if k == "all" else k) for s in self.splits}
            for k in (*self.keys, "all")
        }
        for k, row in stats.items():
            t.add_row(k, *(row[s].cell() for s in self.splits), end_section=k == self.keys[-1])
        reasons = sorted(
            {r for s in self.splits for r in stats["all"][s].by_reason},
            key=lambda r: (-sum(stats["all"][s].by_reason.get(r, 0) for s in self.splits), r),
        )
        rt = Table(title="safety events by reason (total over episodes)")
        rt.add_column("reason")
        for s in self.splits:
            rt.add_column(s, justify="right")
        for r in reasons:
            rt.add_row(r, *(str(stats["all"][s].by_reason.get(r, 0)) for s in self.splits))
        if not reasons:
            rt.add_row("(none)", *("0" for _ in self.splits))
        return [t, rt]
