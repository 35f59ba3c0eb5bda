"""The replay driver: plays an MCAP recording back into StreamBuffers with the original stamps.

Reads our recordings (:mod:`mmrobot.drivers.recording`; exact stream specs come from the
file's ``mmrobot.streams`` metadata) and ROS 2 bags in MCAP recorded elsewhere, given a
topic -> stream mapping (file format: https://mcap.dev/spec, ``ros2`` profile; message
decoding: :func:`mmrobot.drivers.recording.decode_message`).

Three modes:

- ``realtime``: a background thread pushes each sample when ``speed`` times the elapsed
  time on ``clock`` reaches its offset from the first stamp, like the live driver would.
- ``fast``: the thread pushes as fast as it can (keep consumers ahead of the ring).
- ``manual``: nothing moves on its own; :meth:`Replay.advance_to` pushes every sample up to
  a stamp, :meth:`Replay.step` one sample. Deterministic: for dataset building and tests.

Every chunk is CRC-checked as it is read (:mod:`mmrobot.drivers.recording.chunk_check`): a corrupted
chunk is skipped, never pushed, logged with its topics and time range, listed in
:attr:`Replay.corrupt_chunks` and counted in ``stats.checksum_errors``.

Pushed stamps are the recorded ones (``header.stamp``), so a
:class:`~mmrobot.sync.Synchronizer` queried at :meth:`Replay.position_ns` sees what the
robot saw. In a rig file::

    [[driver]]
    kind = "replay"
    name = "log"
    path = "logs/run1.mcap"                          # relative to the rig file
    topics = { "/camera/image_raw" = "scene_cam" }   # only for bags recorded elsewhere
    mode = "realtime"
    speed = 1.0
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from mmrobot.core.clock import Clock
from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.base import Driver, DriverConfig, Health, register_driver
from mmrobot.drivers.recording import RecordingInfo, decode_messages, plan_reading
from mmrobot.drivers.recording.chunk_check import CorruptChunk

__all__ = ["Replay", "ReplayConfig", "ReplayMode"]

ReplayMode = Literal["realtime", "fast", "manual"]
_MAX_BATCH = 512  # samples pushed per reader-thread step in fast mode


class ReplayConfig(DriverConfig):
    """Rig-file entry of a replay driver.

    Attributes:
        path: the ``.mcap`` file; relative paths are relative to the rig file.
        topics: topic -> stream name, to select or rename topics (required for bags recorded
            elsewhere; their specs are inferred from the first message and the mean rate).
        mode: ``realtime``, ``fast`` or ``manual`` (see the module docstring).
        speed: playback speed factor in ``realtime`` mode (2.0 = twice as fast).
    """

    kind: str = "replay"
    name: str = Field(default="replay", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    path: str
    topics: dict[str, str] | None = None
    mode: ReplayMode = "realtime"
    speed: float = Field(default=1.0, gt=0)


@register_driver("replay")
class Replay(Driver):
    """Plays a recording into one StreamBuffer per stream (a :class:`Driver`).

    Args:
        config: the entry (see :class:`ReplayConfig`); or use :meth:`from_file`.
        clock: paces ``realtime`` mode (default the host monotonic clock).
        source: the rig file, to resolve a relative ``path`` and name it in errors.
        capacity: ring capacity of each stream buffer.
        topics: topic -> stream name or StreamSpec; overrides ``config.topics`` (a spec
            here gives the exact spec for a foreign topic instead of an inferred one).

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: not an MCAP file; a topic not in the file (the error lists them); a
            foreign file without a topic mapping.
    """

    Config = ReplayConfig
    config: ReplayConfig

    def __init__(
        self,
        config: ReplayConfig,
        *,
        clock: Clock | None = None,
        source: str | None = None,
        capacity: int = 4096,
        topics: Mapping[str, str | StreamSpec] | None = None,
    ) -> None:
        if not isinstance(config, ReplayConfig):
            raise ConfigError(f"Replay needs a ReplayConfig, got {type(config).__name__}")
        self.path = _resolve_path(config.path, source)
        mapping_arg = topics if topics is not None else config.topics
        self._info, specs, self._mapping = plan_reading(self.path, mapping_arg)
        self._planned_specs = tuple(specs.values())
        super().__init__(config, clock=clock, source=source, capacity=capacity)
        self._it: Iterator[tuple[str, int, np.ndarray]] | None = None
        self._next: tuple[str, int, np.ndarray] | None = None
        self._done = threading.Event()
        self._play_lock = threading.Lock()
        self._t0_log: int | None = None
        self._t0_clock = 0
        self._position_ns: int | None = None
        self._played = 0
        self._decode_errors = 0
        self._corrupt: list[CorruptChunk] = []

    @classmethod
    def from_file(
        cls,
        path: str | os.PathLike[str],
        topics: Mapping[str, str | StreamSpec] | None = None,
        *,
        mode: ReplayMode = "realtime",
        speed: float = 1.0,
        name: str = "replay",
        clock: Clock | None = None,
        capacity: int = 4096,
    ) -> Replay:
        """A replay of ``path`` (see the class arguments)."""
        try:
            config = ReplayConfig(path=str(path), mode=mode, speed=speed, name=name)
        except Exception as e:  # pydantic ValidationError: say it plainly
            raise ConfigError(f"replay of {path}: {e}") from None
        return cls(config, clock=clock, capacity=capacity, topics=topics)

    # -- Driver hooks -----------------------------------------------------------------

    def _stream_defaults(self) -> list[dict[str, Any]]:
        return [s.to_dict() for s in self._planned_specs]

    def _build_specs(self) -> tuple[StreamSpec, ...]:
        # The recorded specs, exactly: the rig's `stream` overrides do not apply to a replay.
        return self._planned_specs

    def _connect(self) -> None:
        self._close_iter()
        for buf in self._buffers.values():
            buf.clear()  # playing from the start again: earlier stamps must be accepted
        self._corrupt = []
        self._it = decode_messages(
            self._info, self._mapping, on_error=self._on_decode_error, on_corrupt=self._on_corrupt
        )
        self._next = None
        self._t0_log = None
        self._position_ns = None
        self._played = 0
        self._done.clear()

    def _disconnect(self) -> None:
        self._close_iter()

    def _close_iter(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "close"):
            it.close()  # closes the file

    def _on_decode_error(self, topic: str, e: Exception) -> None:
        self._decode_errors += 1
        self._c.errors += 1
        self._c.last_error = f"{topic}: {type(e).__name__}: {e}"

    def _on_corrupt(self, chunk: CorruptChunk) -> None:
        self._corrupt.append(chunk)
        self._c.checksum_errors += 1
        self._c.last_error = chunk.describe()

    def _poll(self) -> None:
        mode = self.config.mode
        if mode == "manual" or self._done.is_set():
            self._stop.wait(0.05)
            return
        wait_s = 0.0
        with self._play_lock:
            if mode == "fast":
                for _ in range(_MAX_BATCH):
                    if self._push_next() is None:
                        return
                return
            # realtime: push everything that is due, then sleep until the next one is
            for _ in range(_MAX_BATCH):
                nxt = self._peek()
                if nxt is None:
                    return
                now = self.clock.now_ns()
                if self._t0_log is None:
                    self._t0_log, self._t0_clock = nxt[1], now
                due = self._t0_clock + round((nxt[1] - self._t0_log) / self.config.speed)
                if now < due:
                    wait_s = min((due - now) / 1e9, 0.05)
                    break
                self._push_next()
            else:
                return
        self._stop.wait(wait_s)

    def _peek(self) -> tuple[str, int, np.ndarray] | None:
        if self._next is None and self._it is not None:
            self._next = next(self._it, None)
            if self._next is None:
                self._done.set()
        return self._next

    def _push_next(self) -> tuple[str, int] | None:
        item = self._peek()
        if item is None:
            return None
        self._next = None
        name, t_ns, value = item
        self._push(name, t_ns, value)
        self._position_ns = t_ns
        self._played += 1
        return name, t_ns

    # -- manual mode --------------------------------------------------------------------

    def _require_manual(self, what: str) -> None:
        self._require_open(what)
        if self.config.mode != "manual":
            raise LifecycleError(
                f"replay {self.name!r}: {what} needs mode='manual' (this replay is "
                f"{self.config.mode!r} and its thread is already playing)"
            )

    def step(self) -> tuple[str, int] | None:
        """Push the next sample (manual mode); returns (stream, t_ns), None at the end."""
        self._require_manual("step()")
        with self._play_lock:
            return self._push_next()

    def advance_to(self, t_ns: int) -> int:
        """Push every sample stamped at or before ``t_ns`` (manual mode); returns how many."""
        self._require_manual("advance_to()")
        n = 0
        with self._play_lock:
            while True:
                nxt = self._peek()
                if nxt is None or nxt[1] > t_ns:
                    return n
                self._push_next()
                n += 1

    # -- state --------------------------------------------------------------------------

    @property
    def info(self) -> RecordingInfo:
        """What the file holds (complete or cut off, message counts, time span)."""
        return self._info

    @property
    def start_ns(self) -> int | None:
        """Smallest log time in the file (the recording's first stamp)."""
        return self._info.start_ns

    @property
    def end_ns(self) -> int | None:
        """Largest log time in the file."""
        return self._info.end_ns

    @property
    def position_ns(self) -> int | None:
        """Stamp of the last sample pushed (None before the first): "now" in the log."""
        return self._position_ns

    @property
    def played(self) -> int:
        """Samples pushed since open (accepted or not by the buffers)."""
        return self._played

    @property
    def decode_errors(self) -> int:
        """Messages that could not be decoded and were skipped (see ``stats.last_error``)."""
        return self._decode_errors

    @property
    def corrupt_chunks(self) -> tuple[CorruptChunk, ...]:
        """Corrupted chunks met so far in this playback (skipped: none of their messages is pushed)."""
        return tuple(self._corrupt)

    @property
    def done(self) -> bool:
        """True once every message has been pushed."""
        return self._done.is_set()

    def wait_done(self, timeout_s: float | None = None) -> bool:
        """Block until playback ends (realtime or fast mode); False on timeout."""
        self._require_open("wait_done()")
        return self._done.wait(timeout_s)

    @property
    def health(self) -> Health:
        """``ok`` while playing, ``stale`` once the recording has ended, ``closed`` when closed."""
        if not self._opened:
            return Health.CLOSED
        return Health.STALE if self._done.is_set() else Health.OK

    def __repr__(self) -> str:
        return f"Replay({str(self.path)!r}, mode={self.config.mode!r}, streams={[s.name for s in self.specs]})"


def _resolve_path(path: str, source: str | None) -> Path:
    p = Path(path).expanduser()
    if not p.is_absolute() and source is not None:
        src = Path(source)
        if src.is_file():
            p = src.parent / p
    return p
