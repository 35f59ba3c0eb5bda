"""Read MCAP records with every chunk checked; report and skip corrupted chunks.

MCAP specification (https://mcap.dev/spec), section "Chunk" (op 0x06): a Chunk record holds
``uncompressed_crc``, the CRC32 of its uncompressed ``records`` field, where 0 means the
writer did not compute one; ``message_start_time`` and ``message_end_time`` bound the log
times of its messages. The Message Index records (op 0x07) that follow a chunk name the
channels it holds and how many messages each.

mcap's own readers check that CRC only when built with ``validate_crcs=True``, and then raise
``CRCValidationError`` on the first bad chunk, which ends the whole read. Here each chunk is
opened on its own with the same check (``mcap.stream_reader.breakup_chunk(chunk,
validate_crc=True)``): a chunk whose CRC does not match, whose data does not decompress, or
whose records do not parse is reported as a :class:`CorruptChunk` (byte offset, topics, time
range, message count, reason) and skipped whole; none of its messages is ever yielded, and
the rest of the file is read. A chunk written with ``uncompressed_crc = 0`` is checked only
for decompression and parsing.
"""

from __future__ import annotations

import heapq
import io
import os
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mmrobot.core.errors import DependencyNotInstalled

__all__ = [
    "MCAP_MAGIC",
    "CorruptChunk",
    "Scan",
    "check_chunk",
    "check_indexed_chunks",
    "describe_corruption",
    "has_footer",
    "indexed_messages",
    "linear_records",
    "subtract_lost",
    "summary_scan",
]

MCAP_MAGIC = b"\x89MCAP0\r\n"
_PIP = {"zstd": "zstandard", "lz4": "lz4"}


@dataclass(frozen=True, slots=True)
class CorruptChunk:
    """A chunk that failed its check and was skipped.

    Attributes:
        offset: byte offset of the Chunk record in the file.
        start_ns, end_ns: the chunk's message log-time range.
        topics: topics of its messages (from its Message Index records); empty when unknown.
        messages: topic -> messages lost (from the same records); empty when unknown.
        reason: what failed (CRC, decompression, record parsing).
    """

    offset: int
    start_ns: int
    end_ns: int
    topics: tuple[str, ...]
    messages: Mapping[str, int]
    reason: str

    @property
    def message_count(self) -> int:
        return sum(self.messages.values())

    def describe(self) -> str:
        topics = ", ".join(self.topics) or "unknown topics"
        lost = f"{self.message_count} messages" if self.messages else "its messages"
        return (
            f"corrupted chunk at byte {self.offset} ({topics}; log time {self.start_ns} .. "
            f"{self.end_ns} ns, {(self.end_ns - self.start_ns) / 1e9:.3f} s): {self.reason}; "
            f"skipped {lost}"
        )


def describe_corruption(chunks: Sequence[CorruptChunk], orphans: int = 0) -> str:
    """One line per corrupted chunk skipped, after a heading (empty when none)."""
    if not chunks and not orphans:
        return ""
    lost = sum(c.message_count for c in chunks)
    lines = [f"{len(chunks)} corrupted chunk(s) skipped ({lost} messages), never replayed as data:"]
    lines += [f"  - {c.describe()}" for c in chunks]
    if orphans:
        lines.append(
            f"  - {orphans} later messages skipped: their channel was defined in a corrupted chunk"
        )
    return "\n".join(lines)


def subtract_lost(counts: Mapping[str, int], chunks: Sequence[CorruptChunk]) -> dict[str, int]:
    """Per-topic message counts less the messages of ``chunks``."""
    out = dict(counts)
    for c in chunks:
        for topic, n in c.messages.items():
            if topic in out:
                out[topic] = max(0, out[topic] - n)
    return out


def has_footer(path: Path) -> bool:
    """Whether the file ends with a Footer record and the magic (the writer finished)."""
    size = path.stat().st_size
    if size < 8 + 9 + 20 + 8:
        return False
    with open(path, "rb") as f:
        f.seek(-8, os.SEEK_END)
        if f.read(8) != MCAP_MAGIC:
            return False
        f.seek(-(8 + 9 + 20), os.SEEK_END)
        return f.read(1) == b"\x02"  # footer opcode


def check_chunk(chunk: Any) -> tuple[list[Any] | None, str | None]:
    """The records of a Chunk after checking it: ``(records, None)`` or ``(None, reason)``.

    Raises:
        DependencyNotInstalled: the chunk's compression needs a package that is missing.
    """
    from mcap.exceptions import UnsupportedCompressionError
    from mcap.stream_reader import CRCValidationError, breakup_chunk

    try:
        return breakup_chunk(chunk, validate_crc=True), None
    except CRCValidationError as e:
        return None, (
            f"CRC32 of the uncompressed records is {e.actual:#010x}, the chunk says {e.expected:#010x}"
        )
    except UnsupportedCompressionError as e:
        pkg = _PIP.get(chunk.compression, chunk.compression)
        raise DependencyNotInstalled(
            f"chunks compressed with {chunk.compression!r} need the {pkg} package: pip install {pkg}"
        ) from e
    except Exception as e:  # zstd/lz4 errors, short or garbled records inside
        what = f"{chunk.compression} data" if chunk.compression else "records"
        return None, f"{what} do not decode ({type(e).__name__}{': ' + str(e) if str(e) else ''})"


def _describe_channels(channels: Mapping[int, Any], counts: Mapping[int, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for cid, n in counts.items():
        ch = channels.get(cid)
        topic = ch.topic if ch is not None else f"<channel {cid}>"
        out[topic] = out.get(topic, 0) + n
    return out


def _corrupt(
    offset: int,
    start_ns: int,
    end_ns: int,
    channels: Mapping[int, Any],
    counts: Mapping[int, int],
    reason: str,
) -> CorruptChunk:
    messages = _describe_channels(channels, counts)
    return CorruptChunk(offset, start_ns, end_ns, tuple(sorted(messages)), messages, reason)


# --------------------------------------------------------------------------- linear read


@dataclass
class Scan:
    """What a linear read found: records by id, counts, spans, where and why it stopped."""

    schemas: dict[int, Any] = field(default_factory=dict)
    channels: dict[int, Any] = field(default_factory=dict)
    metadata: dict[str, dict[str, str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)
    start: int | None = None
    end: int | None = None
    bytes_read: int = 0
    error: str | None = None
    finished: bool = False
    corrupt: list[CorruptChunk] = field(default_factory=list)
    orphans: int = 0  # messages whose Channel record was lost in a corrupted chunk


def _seed_from_summary(f: IO[bytes], scan: Scan) -> None:
    """Channels and schemas from a finished file's summary, in case a bad chunk held them."""
    from mcap.reader import SeekingReader

    try:
        summary = SeekingReader(f).get_summary()
    except Exception:  # no footer (cut off) or a damaged summary: nothing to seed
        summary = None
    if summary is not None:
        scan.schemas.update(summary.schemas)
        scan.channels.update(summary.channels)
    f.seek(0)


def linear_records(path: Path, scan: Scan) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (schema, channel, message) in file order, checking each chunk.

    Reads with mcap's StreamReader (no index needed) and stops at the first record that
    cannot be read whole (a file cut off mid-write), keeping everything before it. A chunk
    that fails :func:`check_chunk` is skipped and added to ``scan.corrupt``.
    """
    from mcap.records import Channel, Chunk, Footer, Message, MessageIndex, Metadata, Schema
    from mcap.stream_reader import StreamReader

    size = path.stat().st_size
    with open(path, "rb") as f:
        if has_footer(path):
            _seed_from_summary(f, scan)
        # a record cannot be longer than the file: a garbled length fails fast
        records = StreamReader(f, emit_chunks=True, record_size_limit=size).records
        bad: tuple[int, Any, str] | None = None  # a corrupted chunk awaiting its message indexes
        bad_counts: dict[int, int] = {}

        def report(off: int, chunk: Any, reason: str) -> None:
            scan.corrupt.append(
                _corrupt(
                    off,
                    chunk.message_start_time,
                    chunk.message_end_time,
                    scan.channels,
                    bad_counts,
                    reason,
                )
            )

        while True:
            start = f.tell()
            try:
                rec = next(records)
            except StopIteration:
                scan.finished = True
                break
            except Exception as e:  # EndOfFile, a short chunk, a garbled length...
                name = type(e).__name__
                scan.error = f"{name} at byte {scan.bytes_read}" + (f": {e}" if str(e) else "")
                break
            scan.bytes_read = f.tell()
            if isinstance(rec, MessageIndex):
                if bad is not None:
                    bad_counts[rec.channel_id] = len(rec.records)
                continue
            if bad is not None:
                report(*bad)
                bad, bad_counts = None, {}
            inner: list[Any] = [rec]
            if isinstance(rec, Chunk):
                opened, reason = check_chunk(rec)
                if opened is None:
                    bad = (start, rec, reason or "")
                    continue
                inner = opened
            for r in inner:
                if isinstance(r, Schema):
                    scan.schemas[r.id] = r
                elif isinstance(r, Channel):
                    scan.channels[r.id] = r
                elif isinstance(r, Metadata):
                    scan.metadata[r.name] = dict(r.metadata)
                elif isinstance(r, Footer):
                    scan.finished = True
                elif isinstance(r, Message):
                    ch = scan.channels.get(r.channel_id)
                    if ch is None:
                        if scan.corrupt:
                            scan.orphans += 1  # its Channel record was in a corrupted chunk
                            continue
                        scan.error = f"message on unknown channel {r.channel_id} at byte {start}"
                        return
                    _count(scan, ch.topic, r.log_time)
                    yield scan.schemas.get(ch.schema_id), ch, r
        if bad is not None:
            report(*bad)


def _count(scan: Scan, topic: str, t: int) -> None:
    scan.counts[topic] = scan.counts.get(topic, 0) + 1
    lo, hi = scan.spans.get(topic, (t, t))
    scan.spans[topic] = (min(lo, t), max(hi, t))
    scan.start = t if scan.start is None else min(scan.start, t)
    scan.end = t if scan.end is None else max(scan.end, t)


# --------------------------------------------------------------------------- indexed read


def _read_indexed_chunk(f: IO[bytes], ci: Any) -> tuple[list[Any] | None, str | None]:
    """Read and check the chunk a Chunk Index points at (its length bounds the read)."""
    from mcap.data_stream import ReadDataStream
    from mcap.opcode import Opcode
    from mcap.records import Chunk

    f.seek(ci.chunk_start_offset)
    data = f.read(ci.chunk_length)
    if len(data) != ci.chunk_length or data[0] != Opcode.CHUNK:
        return None, "the chunk index points at something that is not a whole chunk record"
    try:
        chunk = Chunk.read(ReadDataStream(io.BytesIO(data[9:])))
    except Exception as e:
        return None, f"the chunk record does not parse ({type(e).__name__})"
    return check_chunk(chunk)


def _index_counts(f: IO[bytes], ci: Any) -> dict[int, int]:
    """channel id -> messages in a chunk, from its Message Index records (what reads)."""
    from mcap.data_stream import ReadDataStream
    from mcap.records import MessageIndex

    out: dict[int, int] = {}
    for cid, off in ci.message_index_offsets.items():
        try:
            f.seek(off + 9)  # opcode (1) and record length (8)
            out[cid] = len(MessageIndex.read(ReadDataStream(f)).records)
        except Exception:
            continue
    return out


def _indexed_corrupt(f: IO[bytes], summary: Any, ci: Any, reason: str) -> CorruptChunk:
    return _corrupt(
        ci.chunk_start_offset,
        ci.message_start_time,
        ci.message_end_time,
        summary.channels,
        _index_counts(f, ci),
        reason,
    )


def summary_scan(path: Path, check_chunks: bool) -> Scan | None:
    """A Scan from a finished file's summary (None when it has no usable summary).

    Counts come from the Statistics record and spans from the Chunk Indexes (chunk
    resolution); with ``check_chunks`` every chunk is read and checked, and the corrupted
    ones are left out of both.
    """
    from mcap.reader import SeekingReader

    try:
        with open(path, "rb") as f:
            reader = SeekingReader(f)
            summary = reader.get_summary()
            if summary is None or summary.statistics is None or not summary.chunk_indexes:
                return None
            meta = {m.name: dict(m.metadata) for m in reader.iter_metadata()}
            corrupt = check_indexed_chunks(f, summary) if check_chunks else []
    except DependencyNotInstalled:
        raise
    except Exception:  # a damaged summary: the caller reads linearly instead
        return None
    stats = summary.statistics
    scan = Scan(
        schemas=dict(summary.schemas),
        channels=dict(summary.channels),
        metadata=meta,
        bytes_read=path.stat().st_size,
        finished=True,
        corrupt=corrupt,
    )
    bad = {c.offset for c in corrupt}
    good = [ci for ci in summary.chunk_indexes if ci.chunk_start_offset not in bad]
    spans: dict[int, tuple[int, int]] = {}
    for ci in good:
        for cid in ci.message_index_offsets:
            lo, hi = spans.get(cid, (ci.message_start_time, ci.message_end_time))
            spans[cid] = (min(lo, ci.message_start_time), max(hi, ci.message_end_time))
    for cid, n in stats.channel_message_counts.items():
        ch = summary.channels.get(cid)
        if ch is None or n == 0:
            continue
        scan.counts[ch.topic] = scan.counts.get(ch.topic, 0) + n
        if cid in spans:
            scan.spans[ch.topic] = spans[cid]
    scan.counts = subtract_lost(scan.counts, corrupt)
    if corrupt:
        if good:  # a chunk's time range is the exact range of its messages
            scan.start = min(ci.message_start_time for ci in good)
            scan.end = max(ci.message_end_time for ci in good)
    elif stats.message_count:
        scan.start, scan.end = stats.message_start_time, stats.message_end_time
    return scan


def check_indexed_chunks(f: IO[bytes], summary: Any) -> list[CorruptChunk]:
    """Read and check every chunk a finished file's summary lists; the corrupted ones."""
    out = []
    for ci in summary.chunk_indexes:
        records, reason = _read_indexed_chunk(f, ci)
        if records is None:
            out.append(_indexed_corrupt(f, summary, ci, reason or ""))
    return out


def indexed_messages(
    f: IO[bytes],
    summary: Any,
    topics: Collection[str] | None,
    on_corrupt: Callable[[CorruptChunk], None],
) -> Iterator[tuple[Any, Any, Any]]:
    """Yield (schema, channel, message) of ``topics`` in log-time order through the index.

    Chunks are read one at a time, in order of their first log time, and only while one
    may hold a message earlier than the earliest one pending, so memory stays bounded by
    the overlap of chunks in time. A chunk that fails its check goes to ``on_corrupt``.
    """
    from mcap.records import Message

    wanted = {cid for cid, ch in summary.channels.items() if topics is None or ch.topic in topics}
    chunks = sorted(
        (
            ci
            for ci in summary.chunk_indexes
            if not ci.message_index_offsets or wanted & ci.message_index_offsets.keys()
        ),
        key=lambda ci: (ci.message_start_time, ci.chunk_start_offset),
    )
    heap: list[tuple[int, int, int, Any]] = []  # (log_time, chunk order, index in chunk, message)
    k = 0
    while k < len(chunks) or heap:
        while k < len(chunks) and (not heap or chunks[k].message_start_time <= heap[0][0]):
            records, reason = _read_indexed_chunk(f, chunks[k])
            if records is None:
                on_corrupt(_indexed_corrupt(f, summary, chunks[k], reason or ""))
            else:
                for i, r in enumerate(records):
                    if isinstance(r, Message) and r.channel_id in wanted:
                        heapq.heappush(heap, (r.log_time, k, i, r))
            k += 1
        if heap:
            m = heapq.heappop(heap)[3]
            ch = summary.channels[m.channel_id]
            yield summary.schemas.get(ch.schema_id), ch, m
