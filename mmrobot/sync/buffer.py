"""StreamBuffer: a preallocated ring of timestamped samples for one stream.

One writer thread pushes; any number of reader threads query. A lock guards the publish step
and every read, so a reader never sees a half-written sample (a large numpy copy may release
the GIL mid-way, so the GIL alone does not guarantee that). Pushing allocates nothing.
"""

from __future__ import annotations

import math
import operator
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from mmrobot.core.types import StreamSpec

__all__ = ["BufferStats", "StreamBuffer"]

# A sample holding both +inf and -inf makes the finiteness test below add them; the sample
# is rejected and counted, so numpy's "invalid value" warning for it is noise.
warnings.filterwarnings("ignore", "invalid value encountered in dot", RuntimeWarning, __name__)


@dataclass(frozen=True, slots=True)
class BufferStats:
    """Counters of a :class:`StreamBuffer` (a snapshot).

    Attributes:
        accepted: samples stored.
        out_of_order: rejected because their time was before the newest stored sample.
        duplicate: rejected because their time equalled the newest stored sample.
        non_finite: rejected because a value was NaN or infinite.
        overwritten: stored samples since dropped by the ring (accepted - capacity, >= 0).
    """

    accepted: int
    out_of_order: int
    duplicate: int
    non_finite: int
    overwritten: int

    @property
    def rejected(self) -> int:
        return self.out_of_order + self.duplicate + self.non_finite


class StreamBuffer:
    """Ring buffer of one stream's samples: int64 times plus one data array.

    Args:
        spec: the stream's spec; ``value`` arrays must have ``spec.shape`` and a dtype that
            casts to ``spec.dtype`` within its kind (float64 into float32 is fine, float
            into uint8 is not).
        capacity: how many of the most recent samples are kept.

    Times are strictly increasing: a sample at or before the newest stored time is rejected
    and counted, as is a sample with a non-finite value. Nothing is stored silently.
    """

    def __init__(self, spec: StreamSpec, capacity: int = 4096) -> None:
        capacity = operator.index(capacity)
        if capacity < 2:
            raise ValueError(f"StreamBuffer capacity must be >= 2, got {capacity}")
        self.spec = spec
        self.capacity = capacity
        # One spare slot: a push writes into a slot no reader can see, checks it, then
        # publishes, so a rejected sample never overwrites the oldest visible one.
        self._n_slots = capacity + 1
        self._dtype = np.dtype(spec.dtype)
        self._shape = spec.shape
        self._t, self._data = self._allocate()
        self._flat = self._data.reshape(self._n_slots, -1)
        # v . w with tiny positive weights is finite exactly when every element of v is: a
        # finite value times the smallest normal number cannot overflow, NaN and inf carry
        # through. One BLAS call, no temporary array (np.isfinite(v).all() costs 3x more).
        tiny = np.finfo(self._dtype).tiny if self._dtype.kind == "f" else 0
        self._finite_weights = np.full(self._flat.shape[1], tiny, dtype=self._dtype)
        self._check_finite = self._dtype.kind == "f"
        # history queries sit at t - offsets; the interpolation weights broadcast in this shape
        n_hist = spec.history
        self._history_offsets = spec.period_ns * np.arange(n_hist - 1, -1, -1, dtype=np.int64)
        self._history_w_shape = (-1, *([1] * len(spec.shape)))
        self._lock = threading.Lock()
        self._count = 0  # samples ever accepted; logical index of the next one
        self._last_t = -(2**63)
        self._out_of_order = 0
        self._duplicate = 0
        self._non_finite = 0

    def _allocate(self) -> tuple[np.ndarray, np.ndarray]:
        """The ring's storage: times ``(n_slots,) int64`` and values ``(n_slots, *shape)``
        (private memory here; :class:`~mmrobot.sync.shared_buffer.SharedStreamBuffer` puts
        them in shared memory)."""
        times = np.zeros(self._n_slots, dtype=np.int64)
        return times, np.zeros((self._n_slots, *self._shape), dtype=self._dtype)

    # ------------------------------------------------------------------ writing
    def push(self, t_ns: int, value: np.ndarray) -> bool:
        """Store a sample.

        Args:
            t_ns: measurement time, int nanoseconds, strictly after the newest stored sample.
            value: array of ``spec.shape`` (any dtype that casts within its kind).

        Returns:
            True when stored; False when rejected (out of order, duplicate time, non-finite).

        Raises:
            TypeError: ``t_ns`` is not an integer.
            ValueError: ``value`` has the wrong shape or dtype for this stream.
        """
        if type(t_ns) is not int:
            t_ns = self._as_int_ns(t_ns)
        if t_ns <= self._last_t:
            if t_ns == self._last_t:
                self._duplicate += 1
            else:
                self._out_of_order += 1
            return False
        if type(value) is not np.ndarray:
            value = np.asarray(value)
        if value.shape != self._shape:
            raise ValueError(
                f"stream {self.spec.name!r}: value shape {value.shape} != spec shape {self._shape}"
            )
        if value.dtype != self._dtype and not np.can_cast(value.dtype, self._dtype, "same_kind"):
            raise ValueError(
                f"stream {self.spec.name!r}: value dtype {value.dtype} cannot be stored as "
                f"{self._dtype} (convert it explicitly, e.g. value.astype('{self._dtype}'))"
            )
        slot = self._count % self._n_slots
        with self._lock:
            self._data[slot] = value
            if self._check_finite and not math.isfinite(self._flat[slot].dot(self._finite_weights)):
                self._non_finite += 1
                return False
            self._t[slot] = t_ns
            self._count += 1
            self._last_t = t_ns
        return True

    def _as_int_ns(self, t_ns: object) -> int:
        try:
            return operator.index(t_ns)  # numpy integers
        except TypeError:
            raise TypeError(
                f"stream {self.spec.name!r}: t_ns must be an int of nanoseconds, got "
                f"{type(t_ns).__name__} {t_ns!r} (use mmrobot.core.seconds_to_ns for seconds)"
            ) from None

    def clear(self) -> None:
        """Forget every sample (counters are kept), e.g. after a device reconnects."""
        with self._lock:
            self._count = 0
            self._last_t = -(2**63)

    # ------------------------------------------------------------------ reading
    @property
    def stats(self) -> BufferStats:
        return BufferStats(
            accepted=self._count,
            out_of_order=self._out_of_order,
            duplicate=self._duplicate,
            non_finite=self._non_finite,
            overwritten=max(0, self._count - self.capacity),
        )

    def __len__(self) -> int:
        """Number of samples currently held (at most ``capacity``)."""
        return min(self._count, self.capacity)

    @property
    def count(self) -> int:
        """Samples ever accepted since creation or :meth:`clear` (a sequence number)."""
        return self._count

    def latest(self) -> tuple[int, np.ndarray] | None:
        """The newest sample as ``(t_ns, value copy)``, or None when empty."""
        with self._lock:
            if self._count == 0:
                return None
            slot = (self._count - 1) % self._n_slots
            return int(self._t[slot]), self._data[slot].copy()

    def window(self, t0_ns: int, t1_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Every held sample with ``t0_ns <= t <= t1_ns``.

        Returns:
            times: (N,) int64, increasing; values: (N, *shape) copies.
        """
        with self._lock:
            lo = self._search(t0_ns, left=True)
            hi = self._search(t1_ns, left=False)
            return self._gather(lo, max(lo, hi))

    def read_since(self, seq: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        """Everything pushed since sequence number ``seq`` (for recorders and loggers).

        Returns:
            times (N,) int64, values (N, *shape), next_seq to pass next time, and how many
            samples since ``seq`` were already overwritten by the ring (lost to this reader).
        """
        with self._lock:
            start = max(0, self._count - self.capacity)
            lo = max(seq, start)
            times, values = self._gather(lo, self._count)
            return times, values, self._count, max(0, start - seq)

    def value_at(self, t_ns: int) -> tuple[np.ndarray, int, bool]:
        """The stream's value at ``t_ns`` by its sync policy: ``(value, age_ns, valid)``.

        ``causal`` takes the latest sample at or before t; ``interp`` interpolates linearly
        between the samples around t and holds the newest one past the end (it never
        extrapolates); ``nearest`` takes the closest sample on either side (the age is then
        negative for a sample after t). ``valid`` is False when no sample is within
        ``max_age_ns`` (inclusive); the value is then the last one held, or zeros.
        With ``spec.history`` = N > 1 the value is ``(N, *shape)`` at
        ``t - (N-1-k) * period`` for k = 0..N-1; rows before the first sample repeat it.
        """
        spec = self.spec
        if spec.history > 1:
            return self._history_at(t_ns)
        with self._lock:
            count = self._count
            if count == 0:
                return spec.zeros(), 0, False
            n_slots = self._n_slots
            newest = count - 1
            if self._last_t <= t_ns:  # the real-time case: the newest sample is at or before t
                i = newest
            else:
                i = self._search(t_ns, left=False) - 1
            oldest = max(0, count - self.capacity)
            if spec.policy == "nearest":
                j = i + 1 if i < newest else i
                if i < oldest or (
                    j != i and self._t[j % n_slots] - t_ns < t_ns - self._t[i % n_slots]
                ):
                    i = j
            elif i < oldest:  # nothing at or before t: no information yet
                return spec.zeros(), 0, False
            slot = i % n_slots
            t_i = int(self._t[slot])
            age = t_ns - t_i
            if spec.policy == "interp" and i < newest and t_i != t_ns:
                nxt = (i + 1) % n_slots
                t_j = int(self._t[nxt])
                w = (t_ns - t_i) / (t_j - t_i)
                a = self._data[slot]
                value = (a + (self._data[nxt] - a) * w).astype(self._dtype, copy=False)
            else:
                value = self._data[slot].copy()
        return value, age, abs(age) <= spec.max_age_ns

    def newest_at(self, t_ns: int, copy: bool = True) -> tuple[np.ndarray | None, int, bool]:
        """The newest sample at or before ``t_ns``: ``(value, age_ns, valid)``.

        One sample of ``spec.shape`` (no history window, no interpolation), so it costs a
        fraction of :meth:`value_at`; its age and validity are those :meth:`value_at` gives
        whenever the sample it reads is at or before t (every policy but ``nearest``). The
        value is a copy, or None with ``copy=False`` (age and validity only) or when no
        sample is at or before t (then ``valid`` is False).
        """
        with self._lock:
            count = self._count
            if count == 0:
                return None, 0, False
            if self._last_t <= t_ns:  # the real-time case
                i = count - 1
            else:
                i = self._search(t_ns, left=False) - 1
                if i < max(0, count - self.capacity):
                    return None, 0, False
            slot = i % self._n_slots
            age = t_ns - int(self._t[slot])
            value = self._data[slot].copy() if copy else None
        return value, age, age <= self.spec.max_age_ns

    def _history_at(self, t_ns: int) -> tuple[np.ndarray, int, bool]:
        # called every control tick for the joint and force histories: numpy's methods and
        # ufuncs rather than its module-level wrappers, and the query offsets made once
        spec = self.spec
        query = t_ns - self._history_offsets
        with self._lock:
            if self._count == 0:
                return spec.zeros(), 0, False
            # Samples from just before the oldest query time to just after t.
            lo = max(
                self._search(int(query[0]), left=False) - 1, max(0, self._count - self.capacity)
            )
            hi = min(self._search(t_ns, left=False) + 1, self._count)
            times, values = self._gather(lo, hi)
        before = times.searchsorted(query, side="right") - 1  # latest at or before each
        if before[-1] < 0:
            return spec.zeros(), 0, False
        last = len(times) - 1
        idx = np.minimum(np.maximum(before, 0), last)  # np.clip, for integers
        if spec.policy == "interp":
            nxt = np.minimum(idx + 1, last)
            span = (times[nxt] - times[idx]).astype(np.float64)
            w = np.where(span > 0, (query - times[idx]) / np.where(span > 0, span, 1.0), 0.0)
            w = w.clip(0.0, 1.0).reshape(self._history_w_shape)
            a = values[idx]
            out = (a + (values[nxt] - a) * w).astype(self._dtype, copy=False)
        elif spec.policy == "nearest":
            nxt = np.minimum(idx + 1, len(times) - 1)
            take_next = (before < 0) | (np.abs(times[nxt] - query) < np.abs(query - times[idx]))
            idx = np.where(take_next, nxt, idx)
            out = values[idx]
        else:
            out = values[idx]
        age = int(t_ns - times[idx[-1]])
        return out, age, abs(age) <= spec.max_age_ns

    # ------------------------------------------------------------------ internals (lock held)
    def _search(self, t_ns: int, left: bool) -> int:
        """Logical index of the first held sample with time >= t (left) or > t (right)."""
        count = self._count
        start = max(0, count - self.capacity)
        n_held = count - start
        if n_held == 0:
            return count
        side = "left" if left else "right"
        s0 = start % self._n_slots
        end = s0 + n_held
        if end <= self._n_slots:
            return start + int(self._t[s0:end].searchsorted(t_ns, side=side))
        first = self._t[s0:]
        second = self._t[: end - self._n_slots]
        if (t_ns < second[0]) if not left else (t_ns <= second[0]):
            return start + int(first.searchsorted(t_ns, side=side))
        return start + len(first) + int(second.searchsorted(t_ns, side=side))

    def _gather(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        slots = np.arange(lo, hi) % self._n_slots
        return self._t[slots], self._data[slots]

    def __repr__(self) -> str:
        return f"StreamBuffer({self.spec.name!r}, {len(self)}/{self.capacity} samples)"
