"""The reader: inspect a recording, map its topics to streams, and read them back."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.recording.chunk_check import (
    MCAP_MAGIC,
    CorruptChunk,
    Scan,
    describe_corruption,
    has_footer,
    indexed_messages,
    linear_records,
    subtract_lost,
    summary_scan,
)
from mmrobot.drivers.recording.format import METADATA_STREAMS
from mmrobot.drivers.recording.ros2 import TopicInfo, decode_message, infer_spec, message_stamp_ns

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """What a file holds and whether it was complete.

    Attributes:
        path: the file.
        complete: True when the file ends with a valid footer (the writer finished).
        bytes_total: file size.
        bytes_read: bytes up to the end of the last complete record read.
        messages: messages read per topic.
        spans: topic -> (first, last) message log_time.
        topics: topic -> ROS 2 message type of every channel seen.
        specs: stream name -> StreamSpec from our ``mmrobot.streams`` metadata (empty for
            files recorded elsewhere).
        stream_topics: stream name -> TopicInfo from that metadata.
        start_ns, end_ns: smallest and largest message log_time (None when no message).
        error: why reading stopped early (None for a file read to its end).
        corrupt_chunks: chunks that failed their check and were skipped; their messages are
            not in ``messages``.
        chunks_checked: True when every chunk read so far was checked (a linear read, or
            ``inspect_recording(..., check_chunks=True)``); False for a summary-only look,
            which cannot know about corrupted chunks.
        orphan_messages: messages skipped because their channel was defined in a corrupted
            chunk (a cut-off file whose summary is gone).
    """

    path: Path
    complete: bool
    bytes_total: int
    bytes_read: int
    messages: Mapping[str, int]
    spans: Mapping[str, tuple[int, int]]
    topics: Mapping[str, str]
    specs: Mapping[str, StreamSpec]
    stream_topics: Mapping[str, TopicInfo]
    start_ns: int | None
    end_ns: int | None
    error: str | None = None
    corrupt_chunks: tuple[CorruptChunk, ...] = ()
    chunks_checked: bool = False
    orphan_messages: int = 0

    @property
    def message_count(self) -> int:
        return sum(self.messages.values())

    def describe(self) -> str:
        """A one-paragraph human summary, with the recovery message for a cut-off file."""
        n = self.message_count
        bad = describe_corruption(self.corrupt_chunks, self.orphan_messages)
        tail_bad = f"\n{bad}" if bad else ""
        if self.complete:
            return (
                f"{self.path}: complete MCAP, {n} messages on {len(self.topics)} topics." + tail_bad
            )
        rest = self.bytes_total - self.bytes_read
        tail = (
            f"the remaining {rest} bytes were an incomplete record (a chunk being written) "
            "and were skipped"
            if rest > 0
            else "the file ends after its last complete record"
        )
        return (
            f"{self.path}: incomplete MCAP (no footer; the writer was stopped before finishing). "
            f"Recovered {n} messages on {len(self.messages)} topics from the first "
            f"{self.bytes_read} of {self.bytes_total} bytes "
            f"({100.0 * self.bytes_read / max(1, self.bytes_total):.1f}%); {tail}. "
            f"Run `mmrobot replay {self.path} --recover OUT.mcap` to write a complete copy."
            + tail_bad
        )


def check_mcap_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path, or an error that says what it is instead of an MCAP file."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"recording {p} does not exist; give the path of an .mcap file")
    if p.is_dir():
        raise ConfigError(f"recording {p} is a folder; give the path of an .mcap file inside it")
    with open(p, "rb") as f:
        head = f.read(8)
    if head != MCAP_MAGIC:
        raise ConfigError(
            f"{p} is not an MCAP file (it starts with {head!r}, an MCAP file with "
            f"{MCAP_MAGIC!r}); record one with `mmrobot record` or convert a ROS 2 bag with "
            "`ros2 bag convert` to the mcap storage"
        )
    return p


def _specs_from_metadata(
    meta: Mapping[str, Mapping[str, str]], path: Path
) -> tuple[dict[str, StreamSpec], dict[str, TopicInfo]]:
    specs: dict[str, StreamSpec] = {}
    infos: dict[str, TopicInfo] = {}
    for name, text in meta.get(METADATA_STREAMS, {}).items():
        try:
            d = json.loads(text)
            specs[name] = StreamSpec.from_dict(d["spec"], where=f"{path}: stream {name!r}")
            infos[name] = TopicInfo(
                name,
                d["topic"],
                d["message_type"],
                d["encoding"],
                d.get("frame_id", ""),
                tuple(d.get("joint_names", ())),
            )
        except (KeyError, ValueError, TypeError) as e:
            raise ConfigError(f"{path}: metadata of stream {name!r} is malformed: {e}") from e
    return specs, infos


def info_from_scan(path: Path, scan: Scan, complete: bool, checked: bool = True) -> RecordingInfo:
    """The :class:`RecordingInfo` of a scanned recording (streams, topics, counts, times)."""
    specs, infos = _specs_from_metadata(scan.metadata, path)
    topics = {
        ch.topic: (scan.schemas[ch.schema_id].name if ch.schema_id in scan.schemas else "")
        for ch in scan.channels.values()
    }
    return RecordingInfo(
        path=path,
        complete=complete,
        bytes_total=path.stat().st_size,
        bytes_read=scan.bytes_read,
        messages=dict(scan.counts),
        spans=dict(scan.spans),
        topics=topics,
        specs=specs,
        stream_topics=infos,
        start_ns=scan.start,
        end_ns=scan.end,
        error=None if complete else scan.error,
        corrupt_chunks=tuple(scan.corrupt),
        chunks_checked=checked,
        orphan_messages=scan.orphans,
    )


def inspect_recording(path: str | os.PathLike[str], *, check_chunks: bool = False) -> RecordingInfo:
    """Say what a file holds (complete or cut off) without decoding messages.

    A complete file is described from its summary section (fast); a file without footer or
    summary is read linearly up to its last complete record, checking every chunk.

    Args:
        path: the ``.mcap`` file.
        check_chunks: also read and check every chunk of a complete file (reads the whole
            file), so that ``corrupt_chunks`` lists the corrupted ones and ``messages``
            leaves their messages out.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not an MCAP file, or our metadata in it is malformed.
    """
    p = check_mcap_path(path)
    if has_footer(p):
        info = _inspect_summary(p, check_chunks)
        if info is not None:
            return info
    scan = Scan()
    for _ in linear_records(p, scan):
        pass
    return info_from_scan(p, scan, complete=has_footer(p) and scan.error is None)


def _inspect_summary(p: Path, check_chunks: bool) -> RecordingInfo | None:
    """RecordingInfo from a finished file's summary, or None when it has no usable summary."""
    scan = summary_scan(p, check_chunks)
    return None if scan is None else info_from_scan(p, scan, complete=True, checked=check_chunks)


def _with_corrupt(info: RecordingInfo, found: Sequence[CorruptChunk]) -> RecordingInfo:
    """``info`` plus the corrupted chunks a read came across (counts made to match)."""
    known = {c.offset for c in info.corrupt_chunks}
    new = sorted((c for c in found if c.offset not in known), key=lambda c: c.offset)
    if not new:
        return info
    # a summary-only info counted the messages of these chunks; a checked one did not
    messages = info.messages if info.chunks_checked else subtract_lost(info.messages, new)
    return replace(info, messages=messages, corrupt_chunks=(*info.corrupt_chunks, *new))


def _resolve_mapping(
    info: RecordingInfo, topics: Mapping[str, str | StreamSpec] | None
) -> dict[str, tuple[str, StreamSpec | None]]:
    """topic -> (stream name, spec or None to infer) for the streams to read."""
    out: dict[str, tuple[str, StreamSpec | None]] = {}
    if topics is None:
        if not info.specs:
            raise ConfigError(
                f"{info.path} has no mmrobot stream metadata (recorded elsewhere?); give a "
                f"topic -> stream mapping, e.g. {{'/camera/image_raw': 'scene_cam'}}; topics in "
                f"the file: {sorted(info.topics)}"
            )
        for name, spec in info.specs.items():
            out[info.stream_topics[name].topic] = (name, spec)
        return out
    by_topic = {ti.topic: n for n, ti in info.stream_topics.items()}
    for topic, target in topics.items():
        if topic not in info.topics:
            raise ConfigError(
                f"topic {topic!r} is not in {info.path}; topics there: "
                + ", ".join(f"{t} ({ty})" for t, ty in sorted(info.topics.items()))
            )
        if isinstance(target, StreamSpec):
            out[topic] = (target.name, target)
        else:
            known = info.specs.get(by_topic.get(topic, ""))
            spec = (
                StreamSpec.from_dict({**known.to_dict(), "name": target})
                if known is not None
                else None
            )
            out[topic] = (str(target), spec)
    names = [n for n, _ in out.values()]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"topic mapping gives stream name(s) {dupes} to more than one topic")
    return out


def _rate(count: int, start: int | None, end: int | None) -> float:
    if count >= 2 and start is not None and end is not None and end > start:
        return (count - 1) * 1e9 / (end - start)
    return 1.0


def iter_messages(
    path: str | os.PathLike[str],
    topics: Mapping[str, str | StreamSpec] | None = None,
) -> tuple[RecordingInfo, dict[str, StreamSpec], Iterator[tuple[str, int, np.ndarray]]]:
    """Open a recording for reading: its info, the stream specs, and a time-ordered iterator.

    Args:
        path: an MCAP file: ours (specs come from its metadata) or a ROS 2 bag recorded
            elsewhere (then ``topics`` is required).
        topics: topic -> stream name, or topic -> StreamSpec, selecting and renaming topics;
            None for every stream of one of our recordings. For a foreign topic given by
            name, the spec is inferred from its first message and its mean rate.

    Returns:
        info, specs (stream name -> spec), and an iterator of ``(stream, t_ns, value)`` in
        log-time order, where ``t_ns`` is ``header.stamp`` (``log_time`` for messages without
        a header) and ``value`` has the spec's shape and dtype. A complete file is read
        through its index with bounded memory; a cut-off file is read linearly up to its
        last complete chunk and sorted in memory.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not an MCAP file, or a topic that is not in it (lists the topics).
    """
    info, specs, mapping = plan_reading(path, topics)
    return info, specs, decode_messages(info, mapping)


def plan_reading(
    path: str | os.PathLike[str],
    topics: Mapping[str, str | StreamSpec] | None = None,
) -> tuple[RecordingInfo, dict[str, StreamSpec], dict[str, tuple[str, StreamSpec]]]:
    """Check a file and a topic mapping: info, specs, and topic -> (stream, spec).

    See :func:`iter_messages` for the arguments and errors.
    """
    info = inspect_recording(path)
    partial = _resolve_mapping(info, topics)
    pending = [t for t, (_, s) in partial.items() if s is None]
    first = _first_messages(info, pending) if pending else {}
    mapping: dict[str, tuple[str, StreamSpec]] = {}
    for t, (name, spec) in partial.items():
        if spec is None:
            if t not in first:
                raise ConfigError(
                    f"topic {t!r} in {info.path} has no messages; cannot infer its stream spec"
                )
            mtype, msg = first[t]
            spec = infer_spec(
                name, mtype, msg, _rate(info.messages.get(t, 0), *_topic_span(info, t))
            )
        mapping[t] = (name, spec)
    specs = {name: spec for name, spec in mapping.values()}
    return info, specs, mapping


def _topic_span(info: RecordingInfo, topic: str) -> tuple[int | None, int | None]:
    return info.spans.get(topic, (None, None))


def _first_messages(info: RecordingInfo, topics: Sequence[str]) -> dict[str, tuple[str, Any]]:
    from mcap_ros2.decoder import DecoderFactory

    factory = DecoderFactory()
    out: dict[str, tuple[str, Any]] = {}
    scan = Scan()
    for schema, ch, rec in linear_records(info.path, scan):
        if ch.topic in topics and ch.topic not in out:
            dec = factory.decoder_for(ch.message_encoding, schema)
            if dec is None:
                raise ConfigError(
                    f"topic {ch.topic!r}: cannot decode {ch.message_encoding!r} messages "
                    "(only ROS 2 cdr with ros2msg schemas)"
                )
            out[ch.topic] = (schema.name, dec(rec.data))
            if len(out) == len(topics):
                break
    return out


def _raw_iter(
    info: RecordingInfo, topics: Sequence[str], on_corrupt: Callable[[CorruptChunk], None]
) -> Iterator[tuple[Any, Any, Any]]:
    """(schema, channel, message) of ``topics`` in log-time order, every chunk checked."""
    if info.complete:
        from mcap.reader import SeekingReader

        with open(info.path, "rb") as f:
            summary = SeekingReader(f).get_summary()
            if summary is not None and summary.chunk_indexes:
                yield from indexed_messages(f, summary, set(topics), on_corrupt)
                return
    scan = Scan()
    items = [x for x in linear_records(info.path, scan) if x[1].topic in topics]
    for c in scan.corrupt:
        if not c.topics or set(c.topics) & set(topics):
            on_corrupt(c)
    items.sort(key=lambda x: x[2].log_time)
    yield from items


def log_corrupt_chunk(path: Path, chunk: CorruptChunk) -> None:
    """Log a warning naming ``path`` and what is wrong with ``chunk``."""
    log.warning("%s: %s", path, chunk.describe())


def decode_messages(
    info: RecordingInfo,
    mapping: Mapping[str, tuple[str, StreamSpec]],
    on_error: Callable[[str, Exception], None] | None = None,
    on_corrupt: Callable[[CorruptChunk], None] | None = None,
) -> Iterator[tuple[str, int, np.ndarray]]:
    """Yield ``(stream, t_ns, value)`` in log-time order for the mapped topics.

    Args:
        info: from :func:`inspect_recording`.
        mapping: topic -> (stream name, spec), from :func:`plan_reading`.
        on_error: called with (topic, error) for a message that cannot be decoded, which is
            then skipped; None raises instead.
        on_corrupt: called with each corrupted chunk met (always also logged as a warning
            with its topics and time range); its messages are skipped, never yielded.
    """
    from mcap_ros2.decoder import DecoderFactory

    def corrupt(chunk: CorruptChunk) -> None:
        log_corrupt_chunk(info.path, chunk)
        if on_corrupt is not None:
            on_corrupt(chunk)

    factory = DecoderFactory()
    for schema, ch, rec in _raw_iter(info, list(mapping), corrupt):
        name, spec = mapping[ch.topic]
        try:
            dec = factory.decoder_for(ch.message_encoding, schema)
            if dec is None:
                raise ConfigError(
                    f"topic {ch.topic!r}: cannot decode {ch.message_encoding!r} messages "
                    "(only ROS 2 cdr with ros2msg schemas)"
                )
            msg = dec(rec.data)
            value = decode_message(schema.name, msg, spec, ch.topic)
        except Exception as e:
            if on_error is None:
                raise
            on_error(ch.topic, e)
            continue
        yield name, message_stamp_ns(msg, rec.log_time), value


@dataclass(frozen=True, slots=True)
class Recording:
    """A recording read into memory: per stream, stamps and values.

    Attributes:
        info: what the file holds and whether it was complete.
        specs: stream name -> StreamSpec.
        times: stream name -> (N,) int64 stamps (``header.stamp``), increasing.
        values: stream name -> (N, *spec.shape) values of the spec's dtype.
    """

    info: RecordingInfo
    specs: Mapping[str, StreamSpec]
    times: Mapping[str, np.ndarray]
    values: Mapping[str, np.ndarray]


def read_recording(
    path: str | os.PathLike[str], topics: Mapping[str, str | StreamSpec] | None = None
) -> Recording:
    """Read every message of the selected streams into memory (see :func:`iter_messages`).

    A file cut off mid-write is read up to its last complete chunk; ``info.complete`` is
    then False and ``info.describe()`` says how much was recovered (also logged). A
    corrupted chunk is skipped (logged); ``info.corrupt_chunks`` lists those met.
    """
    info, specs, mapping = plan_reading(path, topics)
    if not info.complete:
        log.warning("%s", info.describe())
    found: list[CorruptChunk] = []
    times: dict[str, list[int]] = {n: [] for n in specs}
    values: dict[str, list[np.ndarray]] = {n: [] for n in specs}
    for name, t_ns, value in decode_messages(info, mapping, on_corrupt=found.append):
        times[name].append(t_ns)
        values[name].append(value)
    return Recording(
        info=_with_corrupt(info, found),
        specs=specs,
        times={n: np.asarray(times[n], dtype=np.int64) for n in specs},
        values={
            n: (
                np.stack(values[n])
                if values[n]
                else np.zeros((0, *specs[n].shape), dtype=specs[n].dtype)
            )
            for n in specs
        },
    )
