"""File-level constants of our recordings: format version, metadata record names, compressions."""

from __future__ import annotations

from typing import Literal

FORMAT_VERSION = 1
METADATA_STREAMS = "mmrobot.streams"
METADATA_RECORDING = "mmrobot.recording"
METADATA_STATS = "mmrobot.stats"

Compression = Literal["zstd", "lz4", "none"]
COMPRESSIONS: tuple[str, ...] = ("zstd", "lz4", "none")
