"""Time synchronization: per-stream ring buffers, clock models, and the synchronizer.

Imports numpy only.
"""

from mmrobot.sync.buffer import BufferStats, StreamBuffer
from mmrobot.sync.clock_model import ClockModel
from mmrobot.sync.shared_buffer import SharedBufferHandle, SharedStreamBuffer
from mmrobot.sync.synchronizer import MatchedSet, Synchronizer, match_sets

__all__ = [
    "BufferStats",
    "ClockModel",
    "MatchedSet",
    "SharedBufferHandle",
    "SharedStreamBuffer",
    "StreamBuffer",
    "Synchronizer",
    "match_sets",
]
