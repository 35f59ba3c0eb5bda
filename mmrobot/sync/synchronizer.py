"""Synchronizer: one observation of every stream at one time, and offline set matching."""

from __future__ import annotations

import bisect
import operator
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from mmrobot.core.types import Observation, StreamSpec
from mmrobot.sync.buffer import StreamBuffer

__all__ = ["MatchedSet", "Synchronizer", "match_sets"]


class Synchronizer:
    """Reads every stream's value at a time ``t`` by that stream's sync policy.

    Args:
        buffers: one :class:`StreamBuffer` per stream; names must be unique.

    Missing or stale streams are a normal case: their ``valid`` flag is False and the
    policy sees the mask. ``observe`` never raises for any time.
    """

    def __init__(self, buffers: Sequence[StreamBuffer]) -> None:
        names = [b.spec.name for b in buffers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Synchronizer: stream names must be unique, repeated: {duplicates}")
        if not buffers:
            raise ValueError("Synchronizer needs at least one StreamBuffer")
        self.buffers: tuple[StreamBuffer, ...] = tuple(buffers)
        self.specs: tuple[StreamSpec, ...] = tuple(b.spec for b in self.buffers)
        self._by_name = {b.spec.name: b for b in self.buffers}

    def __getitem__(self, name: str) -> StreamBuffer:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no stream {name!r}; streams are {list(self._by_name)}") from None

    def observe(self, t_ns: int) -> Observation:
        """Every stream's value, age and validity at ``t_ns``.

        Returns:
            An :class:`Observation` whose ``values[name]`` has the spec's ``obs_shape``.
        """
        t_ns = operator.index(t_ns)
        values: dict[str, np.ndarray] = {}
        ages: dict[str, int] = {}
        valid: dict[str, bool] = {}
        for buf in self.buffers:
            name = buf.spec.name
            values[name], ages[name], valid[name] = buf.value_at(t_ns)
        return Observation(t_ns=t_ns, values=values, ages_ns=ages, valid=valid)

    def observe_latest(self, t_ns: int, streams: Collection[str]) -> Observation:
        """A control tick's observation: cheaper than :meth:`observe` when only a few
        streams' values are needed between policy calls.

        ``values`` holds only ``streams``, each its newest sample at or before ``t_ns`` (one
        sample of the stream's ``shape``: no history window, no interpolation; zeros when
        there is none); ``ages_ns`` and ``valid`` hold every stream, as :meth:`observe`
        gives them (:meth:`StreamBuffer.newest_at`).
        """
        t_ns = operator.index(t_ns)
        values: dict[str, np.ndarray] = {}
        ages: dict[str, int] = {}
        valid: dict[str, bool] = {}
        for buf in self.buffers:
            name = buf.spec.name
            wanted = name in streams
            value, ages[name], valid[name] = buf.newest_at(t_ns, copy=wanted)
            if wanted:
                values[name] = (
                    value if value is not None else np.zeros(buf.spec.shape, buf.spec.dtype)
                )
        return Observation(t_ns=t_ns, values=values, ages_ns=ages, valid=valid)


@dataclass(frozen=True, slots=True)
class MatchedSet:
    """One sample per stream, all within the slop of each other.

    Attributes:
        t_ns: the latest stamp in the set (when the whole set was available).
        times_ns: stream name -> the stamp of its sample.
        values: stream name -> the sample's value.
    """

    t_ns: int
    times_ns: dict[str, int]
    values: dict[str, np.ndarray]

    @property
    def spread_ns(self) -> int:
        return max(self.times_ns.values()) - min(self.times_ns.values())


def match_sets(buffers: Sequence[StreamBuffer], slop_ns: int) -> Iterator[MatchedSet]:
    """Offline matching of sample sets across streams (ROS message_filters' ApproximateTime problem).

    Greedy and linear in the number of samples: take the earliest unused sample of every
    stream, aim at the latest of those (the pivot), move each stream to its unused sample
    nearest the pivot, and emit the set when its spread is within ``slop_ns``; otherwise the
    earliest candidate cannot be matched any more and is skipped. Each sample is used at
    most once and sets come out in time order.

    Args:
        buffers: the streams to match (what each currently holds is used).
        slop_ns: the largest allowed difference between stamps within one set.

    Yields:
        :class:`MatchedSet` objects, in time order.
    """
    slop_ns = operator.index(slop_ns)
    if slop_ns < 0:
        raise ValueError(f"slop_ns must be >= 0, got {slop_ns}")
    names = [b.spec.name for b in buffers]
    data = [b.read_since(0)[:2] for b in buffers]
    times = [d[0].tolist() for d in data]
    ptr = [0] * len(buffers)
    n = [len(t) for t in times]
    k_range = range(len(buffers))
    while all(ptr[k] < n[k] for k in k_range):
        pivot = max(times[k][ptr[k]] for k in k_range)
        for k in k_range:
            tk = times[k]
            p = bisect.bisect_left(tk, pivot, ptr[k])  # first unused sample at or after pivot
            if p == n[k] or (p > ptr[k] and pivot - tk[p - 1] <= tk[p] - pivot):
                p -= 1  # the one just before the pivot is nearer
            ptr[k] = p
        chosen = [times[k][ptr[k]] for k in k_range]
        if max(chosen) - min(chosen) <= slop_ns:
            yield MatchedSet(
                t_ns=max(chosen),
                times_ns=dict(zip(names, chosen)),
                values={names[k]: data[k][1][ptr[k]] for k in k_range},
            )
            for k in k_range:
                ptr[k] += 1
        else:
            ptr[chosen.index(min(chosen))] += 1
