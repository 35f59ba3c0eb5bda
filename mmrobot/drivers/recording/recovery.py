"""Recovery: copy the readable part of a cut-off or damaged recording into a complete MCAP."""

from __future__ import annotations

import os
from pathlib import Path

import mmrobot
from mmrobot.core.errors import ConfigError
from mmrobot.drivers.recording.chunk_check import Scan, has_footer, linear_records
from mmrobot.drivers.recording.format import COMPRESSIONS
from mmrobot.drivers.recording.reader import (
    RecordingInfo,
    check_mcap_path,
    info_from_scan,
    log_corrupt_chunk,
)


def recover_recording(
    path: str | os.PathLike[str], out: str | os.PathLike[str], *, compression: str = "zstd"
) -> RecordingInfo:
    """Copy every readable record of a (possibly cut-off) file into a complete, indexed MCAP.

    Schemas, channels (with their metadata), metadata records and messages are copied
    unchanged (no re-encoding); the output gets a summary and indexes, so any MCAP tool opens it.
    Corrupted chunks are left out (listed in the returned ``corrupt_chunks``, and logged).

    Returns:
        The input's :class:`RecordingInfo` (how much was recovered, what was left out).
    """
    from mcap.writer import CompressionType
    from mcap.writer import Writer as McapWriter

    src = check_mcap_path(path)
    dst = Path(out)
    if dst.resolve() == src.resolve():
        raise ConfigError(f"--recover output {dst} is the input file; give another path")
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression {compression!r} is not one of {COMPRESSIONS}")
    comp = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
    scan = Scan()
    with open(dst, "wb") as f:
        w = McapWriter(f, compression=comp[compression])
        w.start(profile="ros2", library=f"mmrobot {mmrobot.__version__} (recovered)")
        schema_ids: dict[int, int] = {}
        channel_ids: dict[int, int] = {}
        meta_written: set[str] = set()
        for schema, ch, rec in linear_records(src, scan):
            for name, data in scan.metadata.items():
                if name not in meta_written:
                    w.add_metadata(name, data)
                    meta_written.add(name)
            if schema is not None and schema.id not in schema_ids:
                schema_ids[schema.id] = w.register_schema(schema.name, schema.encoding, schema.data)
            if ch.id not in channel_ids:
                channel_ids[ch.id] = w.register_channel(
                    ch.topic,
                    ch.message_encoding,
                    schema_ids.get(ch.schema_id, 0),
                    dict(ch.metadata),
                )
            w.add_message(
                channel_ids[ch.id], rec.log_time, rec.data, rec.publish_time, rec.sequence
            )
        for name, data in scan.metadata.items():
            if name not in meta_written:
                w.add_metadata(name, data)
        w.finish()
    for c in scan.corrupt:
        log_corrupt_chunk(src, c)
    return info_from_scan(src, scan, complete=has_footer(src) and scan.error is None)
