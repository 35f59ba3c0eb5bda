"""The state every incremental byte -> frame decoder shares: its buffer and counters."""

from __future__ import annotations

__all__ = ["StreamDecoder"]


class StreamDecoder:
    """Buffered bytes and the counters a driver reports.

    Attributes:
        frames: frames decoded with a valid checksum.
        checksum_errors: frames rejected (never returned).
        resyncs: times bytes were skipped to find the next frame start.
        skipped_bytes: bytes skipped or dropped in total.
    """

    __slots__ = ("_buf", "frames", "checksum_errors", "resyncs", "skipped_bytes")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = 0
        self.checksum_errors = 0
        self.resyncs = 0
        self.skipped_bytes = 0

    def reset(self) -> None:
        """Drop buffered bytes (after a timeout or reconnect: the rest is not coming)."""
        self.skipped_bytes += len(self._buf)
        self._buf.clear()

    @property
    def pending(self) -> int:
        """Bytes buffered while waiting for the rest of a frame."""
        return len(self._buf)
