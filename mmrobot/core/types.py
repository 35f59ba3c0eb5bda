"""The data types that flow through mmrobot: samples, stream specs, observations, actions.

They are frozen dataclasses so that a value handed downstream cannot be changed behind the
back of whoever holds it. Array fields are not copied on construction: whoever builds one
hands over ownership of its arrays.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

import numpy as np

from mmrobot.core.errors import ConfigError

__all__ = [
    "Modality",
    "SyncPolicy",
    "MODALITIES",
    "SYNC_POLICIES",
    "Sample",
    "StreamSpec",
    "Observation",
    "ActionChunk",
    "Attribution",
]

Modality = Literal["camera", "depth", "lidar", "force", "joints", "gripper", "other"]
SyncPolicy = Literal["nearest", "causal", "interp"]
MODALITIES: tuple[str, ...] = get_args(Modality)
SYNC_POLICIES: tuple[str, ...] = get_args(SyncPolicy)


@dataclass(frozen=True, slots=True)
class Sample:
    """One timestamped measurement of one stream.

    Attributes:
        t_ns: when the measurement was taken, on the host clock (after clock-model mapping
            and latency correction); the stamp used downstream.
        value: the measurement, of the stream's shape and dtype.
        host_receive_ns: when the host received the bytes, or None when not known.
        device_ns: the device's own timestamp, or None for devices without a clock.
    """

    t_ns: int
    value: np.ndarray
    host_receive_ns: int | None = None
    device_ns: int | None = None


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """What one sensor stream carries and how it is synchronized.

    Attributes:
        name: unique stream name, a Python identifier (``"wrist_cam"``, ``"ft"``).
        modality: one of :data:`MODALITIES`; picks the policy's encoder.
        shape: shape of one sample, e.g. ``(96, 96, 3)`` for an RGB image.
        dtype: numpy dtype name of one sample, e.g. ``"uint8"``, ``"float32"``.
        rate_hz: nominal sample rate.
        policy: how :class:`~mmrobot.sync.Synchronizer` picks a value at time t:
            ``"nearest"``, ``"causal"`` (latest at or before t) or ``"interp"`` (linear).
        max_age_ns: a value older than this at observation time is marked invalid.
        latency_ns: fixed latency (exposure, transport) subtracted from receive stamps.
        optional: whether a policy may run without this stream (it sees the validity mask).
        history: number of values per observation. 1 gives the value at t; N > 1 gives an
            ``(N, *shape)`` window resampled at ``t - (N-1-k) * period`` for k = 0..N-1, oldest
            first (history tokens for force and joints).
    """

    name: str
    modality: Modality
    shape: tuple[int, ...]
    dtype: str
    rate_hz: float
    policy: SyncPolicy = "causal"
    max_age_ns: int = 100_000_000
    latency_ns: int = 0
    optional: bool = True
    history: int = 1

    def __post_init__(self) -> None:
        where = f"stream {self.name!r}"
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(
                f"stream name {self.name!r} must be a Python identifier, e.g. 'wrist_cam'"
            )
        if self.modality not in MODALITIES:
            raise ConfigError(f"{where}: modality {self.modality!r} is not one of {MODALITIES}")
        try:
            shape = tuple(operator.index(d) for d in self.shape)
        except TypeError as e:
            raise ConfigError(f"{where}: shape {self.shape!r} must be a tuple of ints") from e
        if any(d <= 0 for d in shape):
            raise ConfigError(f"{where}: shape {shape} has a dimension <= 0")
        object.__setattr__(self, "shape", shape)
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as e:
            raise ConfigError(f"{where}: dtype {self.dtype!r} is not a numpy dtype name") from e
        if dtype.kind not in "biuf":
            raise ConfigError(
                f"{where}: dtype {dtype.name} is not numeric (bool, int, uint or float)"
            )
        object.__setattr__(self, "dtype", dtype.name)
        if not (
            isinstance(self.rate_hz, (int, float))
            and math.isfinite(self.rate_hz)
            and self.rate_hz > 0
        ):
            raise ConfigError(f"{where}: rate_hz must be a positive number, got {self.rate_hz!r}")
        if self.policy not in SYNC_POLICIES:
            raise ConfigError(f"{where}: policy {self.policy!r} is not one of {SYNC_POLICIES}")
        if self.policy == "interp" and dtype.kind != "f":
            raise ConfigError(
                f"{where}: policy 'interp' needs a float dtype, got {dtype.name}; "
                "use 'nearest' or 'causal' for images and integer data"
            )
        for attr in ("max_age_ns", "latency_ns"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ConfigError(f"{where}: {attr} must be an int of nanoseconds, got {value!r}")
            object.__setattr__(self, attr, int(value))
        if self.max_age_ns <= 0:
            raise ConfigError(f"{where}: max_age_ns must be > 0, got {self.max_age_ns}")
        if self.latency_ns < 0:
            raise ConfigError(f"{where}: latency_ns must be >= 0, got {self.latency_ns}")
        if isinstance(self.history, bool) or not isinstance(self.history, int) or self.history < 1:
            raise ConfigError(f"{where}: history must be an int >= 1, got {self.history!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, object], where: str = "stream spec") -> StreamSpec:
        """Build from a plain mapping (a TOML table, a JSON object); unknown keys are errors."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        missing = sorted(
            k for k in ("name", "modality", "shape", "dtype", "rate_hz") if k not in data
        )
        if missing:
            raise ConfigError(f"{where}: missing key(s) {missing}")
        kwargs = dict(data)
        if isinstance(kwargs["shape"], list):
            kwargs["shape"] = tuple(kwargs["shape"])
        return cls(**kwargs)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """A JSON/TOML-ready mapping that :meth:`from_dict` reads back."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["shape"] = list(self.shape)
        return out

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """Shape of this stream's value in an :class:`Observation` (with the history axis)."""
        return self.shape if self.history == 1 else (self.history, *self.shape)

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def period_ns(self) -> int:
        """Nominal sample period."""
        return round(1e9 / self.rate_hz)

    def zeros(self) -> np.ndarray:
        """A zero observation value (:attr:`obs_shape`, stream dtype): what an invalid stream reports."""
        return np.zeros(self.obs_shape, dtype=self.dtype)


@dataclass(frozen=True, slots=True)
class Observation:
    """Every stream's value at one time ``t_ns``, as the synchronizer saw it.

    Attributes:
        t_ns: the observation time.
        values: stream name -> value (a copy; the spec's ``obs_shape`` and dtype).
        ages_ns: stream name -> ``t_ns`` minus the stamp of the sample used (for ``nearest``
            it is negative when the nearest sample is after ``t_ns``).
        valid: stream name -> False when the stream has no sample within ``max_age_ns``.
    """

    t_ns: int
    values: Mapping[str, np.ndarray]
    ages_ns: Mapping[str, int]
    valid: Mapping[str, bool]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.values)

    def all_valid(self, names: tuple[str, ...] | None = None) -> bool:
        """True when every named stream (default: all) is valid."""
        return all(self.valid[n] for n in (names if names is not None else self.valid))


@dataclass(frozen=True)
class Attribution:
    """Which inputs one decision's action tokens attended to (attention rollout).

    Attributes:
        shares: input group -> share of the action tokens' attention mass, in token-layout
            order: ``"instruction"``, then every stream by name. Over valid tokens only; the
            shares sum to 1, and a masked stream's share is exactly 0.
        modalities: input group -> its modality (``"text"`` for the instruction).
        camera_maps: camera stream -> (grid, grid) float32 share of each image patch token
            (row 0 is the top of the image), in the units of ``shares``.
        keypoint_shares: camera stream -> share of its keypoint token (0.0 without one); a
            camera's share is its map's sum plus this.
        method: how it was computed.
    """

    shares: Mapping[str, float]
    modalities: Mapping[str, str]
    camera_maps: Mapping[str, np.ndarray] = field(default_factory=dict)
    keypoint_shares: Mapping[str, float] = field(default_factory=dict)
    method: str = "rollout"

    def to_dict(self, digits: int = 4) -> dict:
        """JSON-ready form (floats rounded to ``digits``)."""
        return {
            "shares": {k: round(float(v), digits) for k, v in self.shares.items()},
            "camera_maps": {
                k: np.round(np.asarray(v, dtype=np.float64), digits).tolist()
                for k, v in self.camera_maps.items()
            },
            "keypoint_shares": {
                k: round(float(v), digits) for k, v in self.keypoint_shares.items()
            },
        }


@dataclass(frozen=True, slots=True)
class ActionChunk:
    """H future actions a policy proposes, starting at ``t_ns`` and spaced ``period_ns``.

    Attributes:
        t_ns: time of the first action (the observation time it was computed for).
        actions: (H, D) float32 actions in the action space's units.
        period_ns: time between consecutive actions.
        tokens: (H, D) int64 action tokens the actions were decoded from, when tokenized.
        done: the policy's estimate that the instruction has been carried out.
        info: scalar diagnostics of the decision (e.g. ``mean_token_prob``).
        attribution: what the decision attended to, when the policy was asked to explain it
            (``act(..., explain=True)``), else None.
    """

    t_ns: int
    actions: np.ndarray
    period_ns: int
    tokens: np.ndarray | None = None
    done: bool = False
    info: Mapping[str, float] = field(default_factory=dict)
    attribution: Attribution | None = None

    def __post_init__(self) -> None:
        if self.actions.ndim != 2:
            raise ValueError(f"ActionChunk.actions must be (H, D), got shape {self.actions.shape}")
        if self.tokens is not None and self.tokens.shape != self.actions.shape:
            raise ValueError(
                f"ActionChunk.tokens shape {self.tokens.shape} != actions shape {self.actions.shape}"
            )
        if self.period_ns <= 0:
            raise ValueError(f"ActionChunk.period_ns must be > 0, got {self.period_ns}")

    @property
    def horizon(self) -> int:
        return int(self.actions.shape[0])

    def time_of(self, i: int) -> int:
        """Time at which action ``i`` is due."""
        return self.t_ns + i * self.period_ns
