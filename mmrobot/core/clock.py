"""Clocks. Every timestamp in mmrobot is an ``int`` of nanoseconds.

A clock is passed to whatever needs the time, never read from a global, so that simulation,
replay and tests run on their own time base.
"""

from __future__ import annotations

import operator
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "MonotonicClock", "ManualClock", "NS_PER_S", "seconds_to_ns"]

NS_PER_S = 1_000_000_000


def seconds_to_ns(seconds: float) -> int:
    """Convert seconds to integer nanoseconds (rounded to the nearest)."""
    return round(seconds * NS_PER_S)


@runtime_checkable
class Clock(Protocol):
    """Anything with ``now_ns() -> int``."""

    def now_ns(self) -> int: ...


class MonotonicClock:
    """The host clock on hardware: ``time.monotonic_ns()``, never steps backwards."""

    def now_ns(self) -> int:
        return time.monotonic_ns()

    def __repr__(self) -> str:
        return "MonotonicClock()"


class ManualClock:
    """A clock that moves only when told: simulation time, replay and tests."""

    def __init__(self, start_ns: int = 0) -> None:
        self._t_ns = operator.index(start_ns)

    def now_ns(self) -> int:
        return self._t_ns

    def set(self, t_ns: int) -> None:
        """Jump to ``t_ns``; refuses to go backwards (a monotonic clock never does)."""
        t_ns = operator.index(t_ns)
        if t_ns < self._t_ns:
            raise ValueError(
                f"ManualClock cannot go backwards: now {self._t_ns} ns, asked {t_ns} ns"
            )
        self._t_ns = t_ns

    def advance(self, dt_ns: int) -> int:
        """Move forward by ``dt_ns`` (>= 0) and return the new time."""
        dt_ns = operator.index(dt_ns)
        if dt_ns < 0:
            raise ValueError(f"ManualClock.advance needs dt_ns >= 0, got {dt_ns}")
        self._t_ns += dt_ns
        return self._t_ns

    def __repr__(self) -> str:
        return f"ManualClock(t_ns={self._t_ns})"
