"""The writer: :class:`Recorder` drains StreamBuffers into an MCAP file of ROS 2 messages."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

import mmrobot
from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.recording.format import (
    COMPRESSIONS,
    FORMAT_VERSION,
    METADATA_RECORDING,
    METADATA_STATS,
    METADATA_STREAMS,
)
from mmrobot.drivers.recording.msgdefs import msgdef_text
from mmrobot.drivers.recording.ros2 import TopicInfo, encode_value, plan_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StreamRecordStats:
    """Counters of one recorded stream.

    Attributes:
        written: messages written.
        dropped: samples overwritten in the StreamBuffer ring before the recorder read them
            (the recorder polled too slowly for the buffer's capacity).
        skipped: samples that cannot be stored in MCAP (negative ``t_ns``).
        first_t_ns, last_t_ns: stamps of the first and last written message (None if none).
    """

    written: int
    dropped: int
    skipped: int
    first_t_ns: int | None
    last_t_ns: int | None


@dataclass(frozen=True, slots=True)
class RecorderStats:
    """A snapshot of a :class:`Recorder`'s counters, per stream."""

    streams: Mapping[str, StreamRecordStats]
    bytes_written: int

    @property
    def written(self) -> int:
        return sum(s.written for s in self.streams.values())

    @property
    def dropped(self) -> int:
        return sum(s.dropped for s in self.streams.values())


class _Stream:
    __slots__ = (
        "buffer",
        "spec",
        "info",
        "schema",
        "seq",
        "written",
        "dropped",
        "skipped",
        "first",
        "last",
    )

    def __init__(self, buffer: Any, info: TopicInfo) -> None:
        self.buffer = buffer
        self.spec: StreamSpec = buffer.spec
        self.info = info
        self.schema: Any = None
        self.seq = buffer.count if hasattr(buffer, "count") else 0
        self.written = self.dropped = self.skipped = 0
        self.first: int | None = None
        self.last: int | None = None


def _declared_joint_names(driver: Any) -> tuple[str, ...] | None:
    """A driver's joint names: its ``joint_names``, else the ``joint`` of each configured servo."""
    names = getattr(driver, "joint_names", None)
    if names:
        return tuple(str(n) for n in names)
    servos = getattr(getattr(driver, "config", None), "servos", None)
    if servos and all(isinstance(getattr(s, "joint", None), str) for s in servos):
        return tuple(s.joint for s in servos)
    return None


def _collect_buffers(sources: Iterable[Any]) -> tuple[list[Any], dict[str, tuple[str, ...]]]:
    """StreamBuffers from buffers and drivers (anything with ``.buffers``), and the joint
    names drivers declare (a ``joint_names`` attribute) for their joints streams."""
    out: list[Any] = []
    names_of: dict[str, tuple[str, ...]] = {}
    for src in sources:
        bufs = getattr(src, "buffers", None)
        if bufs is not None:
            bufs = list(bufs.values() if isinstance(bufs, Mapping) else bufs)
            out.extend(bufs)
            joint_names = _declared_joint_names(src)
            if joint_names:
                for b in bufs:
                    spec = b.spec
                    if spec.modality in ("joints", "gripper") and spec.shape == (len(joint_names),):
                        names_of[spec.name] = tuple(str(n) for n in joint_names)
        elif hasattr(src, "read_since") and hasattr(src, "spec"):
            out.append(src)
        else:
            raise ConfigError(
                f"cannot record {type(src).__name__}: give StreamBuffers or drivers with .buffers"
            )
    names = [b.spec.name for b in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(
            f"stream name(s) {dupes} appear more than once; stream names must be unique"
        )
    if not out:
        raise ConfigError("nothing to record: no streams given")
    return out, names_of


class Recorder:
    """Drains StreamBuffers into an MCAP file of ROS 2 messages.

    Samples are read with :meth:`StreamBuffer.read_since`, so nothing is lost as long as the
    recorder polls before a buffer's ring wraps (capacity / rate seconds); anything lost is
    counted per stream in :attr:`stats` (``dropped``), logged, and written to the file.
    Only samples pushed after :meth:`open` are recorded.

    Args:
        path: output ``.mcap`` file (overwritten).
        sources: StreamBuffers, or drivers (their ``.buffers`` are taken).
        compression: chunk compression, ``"zstd"`` (default), ``"lz4"`` or ``"none"``.
        chunk_size: bytes of messages per chunk before it is compressed and written.
        image_format: ``"raw"`` (sensor_msgs/Image, exact), ``"png"`` (lossless) or
            ``"jpeg"`` (lossy) CompressedImage, for all camera streams, or a mapping
            stream -> format.
        joint_names: stream -> JointState names (default: the driver's ``joint_names`` when
            it has them, else ``<stream>_<i>``).
        frame_ids: stream -> ``header.frame_id`` (default the stream name).
        topics: stream -> topic (default ``/<stream>``).
        flush_interval_s: finish the open chunk and flush the file this often, bounding
            what a killed process loses; 0 disables (chunks end only at ``chunk_size``).
        poll_interval_s: period of the background thread started by :meth:`start`.

    Use as a context manager or call :meth:`open` / :meth:`close`; call :meth:`poll`
    yourself or :meth:`start` a background thread.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sources: Iterable[Any],
        *,
        compression: str = "zstd",
        chunk_size: int = 1 << 20,
        image_format: str | Mapping[str, str] = "raw",
        joint_names: Mapping[str, Sequence[str]] | None = None,
        frame_ids: Mapping[str, str] | None = None,
        topics: Mapping[str, str] | None = None,
        flush_interval_s: float = 1.0,
        poll_interval_s: float = 0.02,
    ) -> None:
        if compression not in COMPRESSIONS:
            raise ConfigError(f"compression {compression!r} is not one of {COMPRESSIONS}")
        if chunk_size <= 0:
            raise ConfigError(f"chunk_size must be > 0 bytes, got {chunk_size}")
        self.path = Path(path)
        buffers, driver_joint_names = _collect_buffers(sources)
        known = {b.spec.name for b in buffers}
        for what, mapping in (
            ("joint_names", joint_names),
            ("frame_ids", frame_ids),
            ("topics", topics),
        ):
            if mapping:
                unknown = sorted(set(mapping) - known)
                if unknown:
                    raise ConfigError(
                        f"{what}: unknown stream(s) {unknown}; streams are {sorted(known)}"
                    )
        if isinstance(image_format, Mapping):
            unknown = sorted(set(image_format) - known)
            if unknown:
                raise ConfigError(
                    f"image_format: unknown stream(s) {unknown}; streams are {sorted(known)}"
                )
        self._streams: list[_Stream] = []
        used_topics: dict[str, str] = {}
        for b in buffers:
            name = b.spec.name
            fmt = (
                image_format.get(name, "raw") if isinstance(image_format, Mapping) else image_format
            )
            info = plan_topic(
                b.spec,
                image_format=fmt,
                topic=(topics or {}).get(name),
                frame_id=(frame_ids or {}).get(name),
                joint_names=(joint_names or {}).get(name, driver_joint_names.get(name)),
            )
            if info.topic in used_topics:
                raise ConfigError(
                    f"streams {used_topics[info.topic]!r} and {name!r} share topic {info.topic!r}"
                )
            used_topics[info.topic] = name
            self._streams.append(_Stream(b, info))
        self._compression = compression
        self._chunk_size = chunk_size
        self._flush_interval_s = flush_interval_s
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._file: IO[bytes] | None = None
        self._writer: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._thread_error: BaseException | None = None
        self._last_flush = 0.0
        self._closed = False

    @property
    def topics(self) -> tuple[TopicInfo, ...]:
        """How each stream is written (topic, message type, encoding)."""
        return tuple(s.info for s in self._streams)

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    # -- lifecycle ----------------------------------------------------------------------

    def open(self) -> Recorder:
        """Create the file, write the header, schemas and stream specs."""
        if self._writer is not None or self._closed:
            raise LifecycleError(
                f"recorder for {self.path} is already {'closed' if self._closed else 'open'}"
            )
        from mcap.writer import CompressionType
        from mcap_ros2.writer import Writer

        if self.path.parent and not self.path.parent.exists():
            raise FileNotFoundError(
                f"output folder {self.path.parent} does not exist; create it first"
            )
        comp = {
            "zstd": CompressionType.ZSTD,
            "lz4": CompressionType.LZ4,
            "none": CompressionType.NONE,
        }
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        self._writer = Writer(
            self._file, chunk_size=self._chunk_size, compression=comp[self._compression]
        )
        self._writer.add_metadata(
            METADATA_RECORDING,
            {
                "format_version": str(FORMAT_VERSION),
                "writer": f"mmrobot {mmrobot.__version__}",
                "created_unix_ns": str(time.time_ns()),
                "stamps": "header.stamp = log_time = publish_time = measurement time t_ns on the host clock",
            },
        )
        self._writer.add_metadata(
            METADATA_STREAMS,
            {
                s.spec.name: json.dumps({"spec": s.spec.to_dict(), **s.info.to_dict()})
                for s in self._streams
            },
        )
        for s in self._streams:
            s.schema = self._writer.register_msgdef(
                s.info.message_type, msgdef_text(s.info.message_type)
            )
            s.seq = s.buffer.count
        self._flush_file()
        self._last_flush = time.monotonic()
        return self

    def start(self) -> Recorder:
        """Open (if needed) and poll in a background thread every ``poll_interval_s``."""
        if self._writer is None:
            self.open()
        if self._thread is not None:
            raise LifecycleError("recorder thread already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mmrobot-recorder", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._poll_interval_s):
            try:
                self.poll()
            except BaseException as e:  # kept and re-raised by close()
                log.error("recording %s stopped: %s: %s", self.path, type(e).__name__, e)
                self._thread_error = e
                return

    def poll(self) -> int:
        """Write everything pushed since the last poll; returns the number of messages written."""
        if self._writer is None:
            raise LifecycleError(
                "Recorder.poll() before open(); use `with Recorder(...)` or call open()"
            )
        with self._lock:
            batch: list[tuple[int, int, _Stream, np.ndarray]] = []
            for k, s in enumerate(self._streams):
                times, values, s.seq, dropped = s.buffer.read_since(s.seq)
                if dropped:
                    if s.dropped == 0:
                        log.warning(
                            "recording %s: stream %r lost %d samples (ring overwritten before "
                            "the recorder read them); poll more often or raise the buffer capacity",
                            self.path,
                            s.spec.name,
                            dropped,
                        )
                    s.dropped += dropped
                for i in range(len(times)):
                    batch.append((int(times[i]), k, s, values[i]))
            batch.sort(key=lambda x: (x[0], x[1]))  # file in time order within a poll
            for t_ns, _, s, value in batch:
                if t_ns < 0:
                    s.skipped += 1
                    continue
                msg = encode_value(s.info, s.spec, t_ns, value)
                self._writer.write_message(
                    s.info.topic,
                    s.schema,
                    msg,
                    log_time=t_ns,
                    publish_time=t_ns,
                    sequence=s.written,
                )
                s.written += 1
                if s.first is None:
                    s.first = t_ns
                s.last = t_ns
            if (
                self._flush_interval_s > 0
                and time.monotonic() - self._last_flush >= self._flush_interval_s
            ):
                self._flush_chunk()
            return len(batch)

    def _flush_chunk(self) -> None:
        # mcap_ros2's Writer does not expose flush(); its mcap Writer does (finishes the chunk).
        inner = getattr(self._writer, "_writer", None)
        if inner is not None and hasattr(inner, "flush"):
            inner.flush()
        self._flush_file()
        self._last_flush = time.monotonic()

    def _flush_file(self) -> None:
        if self._file is not None:
            self._file.flush()

    def flush(self) -> None:
        """Finish the open chunk and flush it to disk (readable even if the process dies now)."""
        if self._writer is None:
            raise LifecycleError("Recorder.flush() before open()")
        with self._lock:
            self._flush_chunk()

    def close(self) -> RecorderStats:
        """Stop the thread, write what is left, the stats and the summary; close the file.

        Raises:
            Exception: whatever stopped the background thread, if anything did.
        """
        if self._writer is None:
            return self.stats
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10.0)
            self._thread = None
        try:
            if self._thread_error is None:
                self.poll()
            stats = self.stats
            self._writer.add_metadata(
                METADATA_STATS,
                {
                    name: json.dumps(
                        {
                            "written": st.written,
                            "dropped": st.dropped,
                            "skipped": st.skipped,
                            "first_t_ns": st.first_t_ns,
                            "last_t_ns": st.last_t_ns,
                        }
                    )
                    for name, st in stats.streams.items()
                },
            )
            self._writer.finish()
        finally:
            if self._file is not None:
                self._file.close()
            self._writer = None
            self._closed = True
        if self._thread_error is not None:
            raise self._thread_error
        return self.stats

    def __enter__(self) -> Recorder:
        if self._writer is None:
            self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stats(self) -> RecorderStats:
        size = (
            self._file.tell()
            if self._file is not None and not self._file.closed
            else (self.path.stat().st_size if self.path.exists() else 0)
        )
        return RecorderStats(
            streams={
                s.spec.name: StreamRecordStats(s.written, s.dropped, s.skipped, s.first, s.last)
                for s in self._streams
            },
            bytes_written=size,
        )

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, streams={[s.spec.name for s in self._streams]})"
