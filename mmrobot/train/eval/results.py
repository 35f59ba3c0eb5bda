"""Evaluation results and statistics: success rates with 95 % Wilson intervals, safety
statistics, and :class:`EvalResult`, the episodes of a run with per-split, per-task queries
(its JSON document and tables are in :mod:`mmrobot.train.eval.report`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmrobot.train.eval.episode import EpisodeResult
from mmrobot.train.eval.instructions import InstructionLine
from mmrobot.train.eval.report import result_document, result_tables, write_result_json
from mmrobot.train.eval.settings import EvalSettings

__all__ = ["EvalResult", "SafetyStats", "SuccessStats", "wilson_interval"]

_Z95 = 1.959963984540054  # standard normal quantile for a two-sided 95 % interval


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

    def sorted_episodes(self) -> list[EpisodeResult]:
        """Episodes in table order: split, row, instructions-file line, seed."""
        split_i = {s: i for i, s in enumerate(self.splits)}
        key_i = {k: i for i, k in enumerate(self.keys)}
        return sorted(
            self.episodes,
            key=lambda e: (split_i.get(e.split, 99), key_i.get(e.key, 99), e.line or 0, e.seed),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see ``docs/evaluation.md``)."""
        return result_document(self)

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` to ``path`` (atomically: a temporary file, then a rename)."""
        return write_result_json(self, path)

    def tables(self) -> list[Any]:
        """Rich tables: success per task and split; per line for an instructions file;
        the safety layer's events."""
        return result_tables(self)
