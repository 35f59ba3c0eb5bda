"""A driver's health and counters: where it stands (:class:`Health`), the snapshot of its
counters it reports (:class:`DriverStats`), the counters its reader thread writes, and what
counts as the port itself failing."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mmrobot.core.errors import DeviceNotConnectedError

__all__ = ["DriverCounters", "DriverStats", "Health", "is_port_failure"]


class Health(str, enum.Enum):
    """Where a driver stands. ``ok``: samples flow; ``stale``: connected but nothing decoded
    recently; ``disconnected``: device gone, reconnecting; ``closed``: not open."""

    CLOSED = "closed"
    CONNECTING = "connecting"
    OK = "ok"
    STALE = "stale"
    DISCONNECTED = "disconnected"


@dataclass(frozen=True, slots=True)
class DriverStats:
    """A snapshot of a driver's counters.

    Attributes:
        samples: values pushed and accepted by the buffers.
        rejected: values the buffers refused (out of order, duplicate time, non-finite).
        bytes: bytes read from the device.
        frames: frames decoded with a valid checksum.
        checksum_errors: frames whose checksum did not match (dropped, never emitted).
        resyncs: times the decoder skipped bytes to find the next frame start.
        timeouts: requests the device did not answer in time.
        reconnects: successful reconnections after the device went away.
        errors: unexpected exceptions caught in the reader thread.
        last_sample_age_ns: now minus the stamp of the last accepted sample, None before one.
        last_error: the most recent error message, None when none.
    """

    samples: int
    rejected: int
    bytes: int
    frames: int
    checksum_errors: int
    resyncs: int
    timeouts: int
    reconnects: int
    errors: int
    last_sample_age_ns: int | None
    last_error: str | None


class DriverCounters:
    """Mutable counters written by the reader thread (int increments are atomic under the GIL)."""

    __slots__ = (
        "samples",
        "rejected",
        "bytes",
        "frames",
        "checksum_errors",
        "resyncs",
        "timeouts",
        "reconnects",
        "errors",
        "last_sample_ns",
        "last_error",
    )

    def __init__(self) -> None:
        self.samples = self.rejected = self.bytes = self.frames = 0
        self.checksum_errors = self.resyncs = self.timeouts = self.reconnects = self.errors = 0
        self.last_sample_ns: int | None = None
        self.last_error: str | None = None


def is_port_failure(e: BaseException) -> bool:
    """Whether ``e`` means the port itself failed (unplugged): OSError, pyserial's
    SerialException, or termios.error (tcflush/tcsetattr on a vanished tty)."""
    if isinstance(e, (OSError, DeviceNotConnectedError)):
        return True
    return (
        type(e).__name__ in ("SerialException", "PortNotOpenError")
        or type(e).__module__ == "termios"
    )
