"""Shared types of mmrobot: samples, stream specs, observations, action chunks, clocks, errors.

Imports numpy only.
"""

from mmrobot.core.clock import NS_PER_S, Clock, ManualClock, MonotonicClock, seconds_to_ns
from mmrobot.core.errors import (
    ConfigError,
    DependencyNotInstalled,
    DeviceNotConnectedError,
    DeviceTimeoutError,
    LifecycleError,
    MmrobotError,
    OutputExistsError,
    ProtocolError,
    SafetyError,
)
from mmrobot.core.types import (
    MODALITIES,
    SYNC_POLICIES,
    ActionChunk,
    Attribution,
    Modality,
    Observation,
    Sample,
    StreamSpec,
    SyncPolicy,
)

__all__ = [
    "NS_PER_S",
    "MODALITIES",
    "SYNC_POLICIES",
    "ActionChunk",
    "Attribution",
    "Clock",
    "ConfigError",
    "DependencyNotInstalled",
    "DeviceNotConnectedError",
    "DeviceTimeoutError",
    "LifecycleError",
    "ManualClock",
    "MmrobotError",
    "Modality",
    "MonotonicClock",
    "Observation",
    "OutputExistsError",
    "ProtocolError",
    "Sample",
    "SafetyError",
    "StreamSpec",
    "SyncPolicy",
    "seconds_to_ns",
]
