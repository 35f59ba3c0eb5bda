"""SharedStreamBuffer: a :class:`~mmrobot.sync.StreamBuffer` whose ring lives in shared memory,
written by one process and read by another without a lock between them.

The reading process creates the segment (:meth:`SharedStreamBuffer.create`; it owns it and
unlinks it on :meth:`~SharedStreamBuffer.close`) and hands :meth:`~SharedStreamBuffer.handle`
to the writing process, which opens the writing side (:meth:`SharedBufferHandle.open_writer`).
The writer is :class:`~mmrobot.sync.StreamBuffer`'s own ``push``, unchanged: it fills the spare
slot no reader can see, then publishes it by storing the new sample count in the segment's
header. A reader never waits for the writer and the writer never waits for a reader (a writer
preempted mid-push blocks nobody); instead each read is checked after the fact, seqlock
style, and retried when it may be torn:

- the reader snapshots the header's epoch and count, runs the same search, interpolation and
  copy code as :class:`~mmrobot.sync.StreamBuffer` on that snapshot, then loads the count and
  the epoch again;
- writing sample ``w`` overwrites the slot of sample ``w - capacity - 1`` and starts only once
  the count has reached ``w``, so a read that touched samples from ``lo`` on is untorn when the
  count it loads afterwards is at most ``lo + capacity`` (with a full ring: nothing was
  published during the read) and the epoch (bumped by ``clear`` and by a new writer) is the
  same; otherwise it runs again on a fresh snapshot.

Memory order: the writer's stores (values, time, then the count) and the reader's loads (count,
values, count) must each stay in program order. x86-64 guarantees both (TSO), and every numpy
store or load here is a separate C call, which the compiler does not reorder. A weakly ordered
CPU (aarch64) gives no such guarantee without fences, which Python cannot issue; there a torn
read is unlikely but not excluded.

Header (int64): magic, count, epoch, out-of-order, duplicate and non-finite counters, capacity,
item size. Times follow at byte 64, values at the next 64-byte boundary.
"""

from __future__ import annotations

import contextlib
import secrets
import sys
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any, TypeVar

import numpy as np

from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.core.types import StreamSpec
from mmrobot.sync.buffer import StreamBuffer

__all__ = ["SEGMENT_PREFIX", "SharedBufferHandle", "SharedStreamBuffer"]

#: Every segment's name starts with this (``/dev/shm/mmrobot-...`` on Linux).
SEGMENT_PREFIX = "mmrobot-"
_MAGIC = 0x6D6D72_0001  # "mmr", layout version 1
_MAGIC_I, _COUNT_I, _EPOCH_I, _OOO_I, _DUP_I, _NONFIN_I, _CAP_I, _ITEM_I = range(8)
_HEADER_BYTES = 64
_MAX_TRIES = 1000  # a read retried this often means the reader cannot keep up at all
_T = TypeVar("_T")


def _aligned(n: int, to: int = 64) -> int:
    return (n + to - 1) // to * to


@dataclass(frozen=True)
class SharedBufferHandle:
    """What another process needs to open a :class:`SharedStreamBuffer` (picklable)."""

    spec: StreamSpec
    name: str
    capacity: int

    def open_writer(self) -> SharedStreamBuffer:
        """The writing side, attached to the existing segment (its owner stays the creator)."""
        return SharedStreamBuffer(self.spec, self.capacity, name=self.name, writer=True)

    def open_reader(self) -> SharedStreamBuffer:
        """Another reading side, attached to the existing segment.

        Open either side in a process the creator started with ``spawn`` (or ``fork``): on
        Python < 3.13 attaching lists the segment with the process's resource tracker, which
        is the creator's there; a process with a tracker of its own would unlink the segment
        when it exits."""
        return SharedStreamBuffer(self.spec, self.capacity, name=self.name, writer=False)


class SharedStreamBuffer(StreamBuffer):
    """A stream's ring in a shared memory segment: one writing process, readers in others.

    Use :meth:`create` (a new segment, owned and unlinked on :meth:`close`) and
    :meth:`SharedBufferHandle.open_writer` in the writing process. Reading methods, counters
    and validation are :class:`~mmrobot.sync.StreamBuffer`'s; a reading side refuses
    ``push`` and ``clear``.

    Args:
        spec: the stream's spec (the same on both sides).
        capacity: samples kept.
        name: the segment to attach to; None creates a new one.
        writer: whether this side pushes (exactly one side of a segment does).
    """

    def __init__(
        self, spec: StreamSpec, capacity: int = 256, *, name: str | None = None, writer: bool
    ) -> None:
        self._writer = writer
        self._owner = name is None
        self._seg_name = name
        self._snap_count: int | None = None
        self._closed = False
        self.torn_reads = 0  # reads run again because the writer overtook them
        super().__init__(spec, capacity)
        if not writer:
            # readers of this process take turns on the snapshot; the writer never takes this
            self._read_lock = threading.Lock()
            self._lock = contextlib.nullcontext()  # type: ignore[assignment]

    @classmethod
    def create(cls, spec: StreamSpec, capacity: int = 256) -> SharedStreamBuffer:
        """A new segment, read here and written by whoever opens :meth:`handle`'s writer."""
        return cls(spec, capacity, writer=False)

    def handle(self) -> SharedBufferHandle:
        return SharedBufferHandle(self.spec, self.name, self.capacity)

    @property
    def name(self) -> str:
        """The segment's name (``/dev/shm/<name>`` on Linux)."""
        return self._shm.name

    # ------------------------------------------------------------------ storage
    def _allocate(self) -> tuple[np.ndarray, np.ndarray]:
        n = self._n_slots
        item = int(np.prod(self._shape, dtype=np.int64)) * self._dtype.itemsize
        t_off = _HEADER_BYTES
        data_off = _aligned(t_off + 8 * n)
        size = data_off + item * n
        if self._owner:
            # stream names are identifiers (StreamSpec checks), so valid in a file name
            name = f"{SEGMENT_PREFIX}{self.spec.name[:40]}-{secrets.token_hex(6)}"
            self._shm = shared_memory.SharedMemory(name=name, create=True, size=size)
            # the owner unlinks at close, or at exit; a killed owner's resource tracker does
            self._finalizer = weakref.finalize(self, _unlink, self._shm)
        else:
            self._shm = _attach(self._seg_name or "")
            self._finalizer = None
        buf = self._shm.buf
        if len(buf) < size:
            have = len(buf)
            self._release()
            raise ConfigError(
                f"shared buffer {self._seg_name!r} of stream {self.spec.name!r} holds "
                f"{have} bytes, {size} expected for capacity {self.capacity} of "
                f"{self._shape} {self._dtype}; open it with the spec and capacity it was made with"
            )
        self._hdr = np.ndarray((8,), np.int64, buf, 0)
        if self._owner:
            self._hdr[_CAP_I] = self.capacity
            self._hdr[_ITEM_I] = item
            self._hdr[_MAGIC_I] = _MAGIC
        elif (
            int(self._hdr[_MAGIC_I]) != _MAGIC
            or int(self._hdr[_CAP_I]) != self.capacity
            or int(self._hdr[_ITEM_I]) != item
        ):
            self._release()
            raise ConfigError(
                f"shared buffer {self._seg_name!r} was not made for stream {self.spec.name!r} "
                f"with capacity {self.capacity} ({self._shape} {self._dtype}); open it through "
                "its SharedBufferHandle"
            )
        if self._writer and int(self._hdr[_COUNT_I]) != 0:
            self._hdr[_EPOCH_I] += 1  # a new writer starts over: readers must not mix the two
        times = np.ndarray((n,), np.int64, buf, t_off)
        data = np.ndarray((n, *self._shape), self._dtype, buf, data_off)
        return times, data

    # The counters StreamBuffer keeps as attributes live in the header, so readers see the
    # writer's; inside a read the count is the reader's snapshot.
    @property  # type: ignore[override]
    def _count(self) -> int:
        snap = self._snap_count
        return int(self._hdr[_COUNT_I]) if snap is None else snap

    @_count.setter
    def _count(self, value: int) -> None:
        if self._writer:
            self._hdr[_COUNT_I] = value

    _out_of_order = property(
        lambda self: int(self._hdr[_OOO_I]), lambda self, v: self._set(_OOO_I, v)
    )
    _duplicate = property(lambda self: int(self._hdr[_DUP_I]), lambda self, v: self._set(_DUP_I, v))
    _non_finite = property(
        lambda self: int(self._hdr[_NONFIN_I]), lambda self, v: self._set(_NONFIN_I, v)
    )

    def _set(self, index: int, value: int) -> None:
        if self._writer:
            self._hdr[index] = value

    # ------------------------------------------------------------------ writing
    def push(self, t_ns: int, value: np.ndarray) -> bool:
        if not self._writer:
            raise LifecycleError(self._read_only("push()"))
        self._require_open()
        return super().push(t_ns, value)

    def clear(self) -> None:
        if not self._writer:
            raise LifecycleError(self._read_only("clear()"))
        self._require_open()
        self._hdr[_EPOCH_I] += 1  # before the count drops: a reader then sees the change
        super().clear()

    def _read_only(self, what: str) -> str:
        return (
            f"shared buffer of stream {self.spec.name!r}: {what} on a reading side; only the "
            "process that opened the writer (SharedBufferHandle.open_writer) writes"
        )

    # ------------------------------------------------------------------ reading
    def _consistent(self, read: Callable[[], _T]) -> _T:
        """Run ``read`` on a snapshot of the header until no write can have torn it."""
        self._require_open()
        if self._writer:  # the writer's process reads under the writer's own lock
            return read()
        hdr, t = self._hdr, self._t
        with self._read_lock:
            for _ in range(_MAX_TRIES):
                epoch = int(hdr[_EPOCH_I])
                count = int(hdr[_COUNT_I])
                self._snap_count = count
                self._last_t = int(t[(count - 1) % self._n_slots]) if count else -(2**63)
                error: Exception | None = None
                out: Any = None
                try:
                    out = read()
                except Exception as e:  # torn times can make the search fail; judged below
                    error = e
                finally:
                    self._snap_count = None
                oldest = max(0, count - self.capacity)
                if int(hdr[_COUNT_I]) <= oldest + self.capacity and int(hdr[_EPOCH_I]) == epoch:
                    if error is not None:
                        raise error
                    return out  # type: ignore[no-any-return]
                self.torn_reads += 1
        raise TimeoutError(
            f"shared buffer of stream {self.spec.name!r}: {_MAX_TRIES} reads in a row were "
            "overtaken by the writer; this reader cannot keep up with the stream"
        )

    def latest(self) -> tuple[int, np.ndarray] | None:
        return self._consistent(super().latest)

    def window(self, t0_ns: int, t1_ns: int) -> tuple[np.ndarray, np.ndarray]:
        return self._consistent(lambda: StreamBuffer.window(self, t0_ns, t1_ns))

    def read_since(self, seq: int) -> tuple[np.ndarray, np.ndarray, int, int]:
        return self._consistent(lambda: StreamBuffer.read_since(self, seq))

    def value_at(self, t_ns: int) -> tuple[np.ndarray, int, bool]:
        try:
            return self._consistent(lambda: StreamBuffer.value_at(self, t_ns))
        except TimeoutError:  # never stall a control tick: the stream is invalid this time
            return self.spec.zeros(), 0, False

    def newest_at(self, t_ns: int, copy: bool = True) -> tuple[np.ndarray | None, int, bool]:
        try:
            return self._consistent(lambda: StreamBuffer.newest_at(self, t_ns, copy))
        except TimeoutError:  # as value_at: the stream is invalid this time
            return None, 0, False

    # ------------------------------------------------------------------ lifecycle
    def _require_open(self) -> None:
        if self._closed:
            raise LifecycleError(
                f"shared buffer of stream {self.spec.name!r} is closed (its session ended)"
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Detach; the creator also unlinks the segment. Closing twice is a no-op."""
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        # numpy views pin the mapping: drop them before closing it (copies handed out stay);
        # the counters stay readable, frozen at their last values
        hdr = self.__dict__.get("_hdr")
        self._hdr = np.zeros(8, np.int64) if hdr is None else hdr.copy()
        for attr in ("_t", "_data", "_flat"):
            self.__dict__.pop(attr, None)
        with contextlib.suppress(BufferError):
            self._shm.close()
        if self._finalizer is not None:
            self._finalizer()

    def __repr__(self) -> str:
        side = "writer" if self._writer else "reader"
        state = "closed" if self._closed else f"{len(self)}/{self.capacity} samples"
        return f"SharedStreamBuffer({self.spec.name!r}, {side}, {state})"


def _unlink(segment: shared_memory.SharedMemory) -> None:
    with contextlib.suppress(FileNotFoundError):
        segment.unlink()


def _attach(name: str) -> shared_memory.SharedMemory:
    """Attach without claiming the segment: on Python 3.13+ untracked; before that the
    resource tracker (shared with the creator under ``spawn``) already lists the name, and
    listing it again changes nothing, as long as only the creator unlinks it."""
    try:
        if sys.version_info >= (3, 13):
            return shared_memory.SharedMemory(name=name, track=False)  # type: ignore[call-arg]
        return shared_memory.SharedMemory(name=name)
    except FileNotFoundError:
        raise LifecycleError(
            f"shared buffer segment {name!r} does not exist (its owner closed it or exited)"
        ) from None
