"""Policy configuration: sizes, fusion and decoding modes, action bins, streams, normalization.

A :class:`PolicyConfig` is read from a TOML file in ``policies/`` (commented, one key per size
parameter) and written into every checkpoint as JSON. Both paths go through
:meth:`PolicyConfig.from_dict`, which rejects unknown keys and out-of-range values with a
message that names the key. The observation spec (a list of :class:`~mmrobot.core.StreamSpec`
tables) is the single source of truth for the network's inputs. Its sections (model,
language, per-modality encoders, action bins, training, normalization) are defined in
:mod:`mmrobot.policies.config_sections` and importable from here.

Imports numpy only, so the ONNX Runtime policy can read the same config without torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from mmrobot.core._toml import tomllib
from mmrobot.core.errors import ConfigError
from mmrobot.core.types import StreamSpec
from mmrobot.policies.config_sections import (
    AUX_TARGETS,
    DECODING_MODES,
    FUSION_MODES,
    IMAGE_MODALITIES,
    LIDAR_ENCODERS,
    MODALITY_ORDER,
    POINT_MODALITIES,
    VECTOR_MODALITIES,
    ActionConfig,
    CameraConfig,
    LanguageConfig,
    LidarConfig,
    ModelConfig,
    NormStats,
    TrainingConfig,
    VectorConfig,
    section_from_dict,
)

__all__ = [
    "AUX_TARGETS",
    "CONFIG_FORMAT_VERSION",
    "FUSION_MODES",
    "DECODING_MODES",
    "IMAGE_MODALITIES",
    "LIDAR_ENCODERS",
    "POINT_MODALITIES",
    "VECTOR_MODALITIES",
    "ModelConfig",
    "LanguageConfig",
    "CameraConfig",
    "LidarConfig",
    "VectorConfig",
    "ActionConfig",
    "TrainingConfig",
    "NormStats",
    "PolicyConfig",
    "load_policy_config",
]

# 2: lean token budget (strided byte-conv instruction, 1-D conv lidar scan, one action
# query per chunk step). Format 1 was the v0 design of mmrobot 0.1.0.
CONFIG_FORMAT_VERSION = 2


def format_version_error(what: str, version: object) -> str:
    """The message for a policy config, checkpoint or export of another format version."""
    if isinstance(version, int) and 1 <= version < CONFIG_FORMAT_VERSION:
        return (
            f"{what} is format v{version} (the v0 design of mmrobot 0.1.0); this mmrobot reads "
            f"format v{CONFIG_FORMAT_VERSION}: retrain it with this version (mmrobot train), "
            "or use mmrobot 0.1.0 to run it"
        )
    return (
        f"{what}: format_version {version!r} is not supported; this mmrobot reads version "
        f"{CONFIG_FORMAT_VERSION} (upgrade mmrobot for newer files)"
    )


@dataclass(frozen=True)
class PolicyConfig:
    """Everything needed to build a policy network and interpret its inputs and outputs.

    Attributes:
        streams: the observation spec; one token block per stream, in modality order
            (cameras, lidar, force, joints, gripper, other) then spec order.
        normalization: stream name -> :class:`NormStats` for float streams (identity if absent).
    """

    streams: tuple[StreamSpec, ...]
    model: ModelConfig = field(default_factory=ModelConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    lidar: LidarConfig = field(default_factory=LidarConfig)
    vector: VectorConfig = field(default_factory=VectorConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    normalization: Mapping[str, NormStats] = field(default_factory=dict)
    format_version: int = CONFIG_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version != CONFIG_FORMAT_VERSION:
            raise ConfigError(format_version_error("policy config", self.format_version))
        if not self.streams:
            raise ConfigError("policy config needs at least one [[streams]] entry")
        names = [s.name for s in self.streams]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"stream name(s) {dup} appear more than once in [[streams]]")
        for s in self.streams:
            self._check_stream(s)
        cams = [s for s in self.streams if s.modality in IMAGE_MODALITIES]
        if len({s.obs_shape for s in cams}) > 1:
            raise ConfigError(
                "all camera streams share one encoder and must have the same shape and history; got "
                + ", ".join(f"{s.name} {s.obs_shape}" for s in cams)
            )
        self._check_camera_map(cams)
        for name, stats in self.normalization.items():
            spec = next((s for s in self.streams if s.name == name), None)
            if spec is None:
                raise ConfigError(
                    f"normalization for {name!r}: no stream of that name in [[streams]]"
                )
            if spec.modality in IMAGE_MODALITIES:
                raise ConfigError(
                    f"normalization for camera {name!r}: images are scaled to [-0.5, 0.5], not normalized"
                )
            if len(stats.mean) != spec.shape[-1]:
                raise ConfigError(
                    f"normalization for {name!r} has {len(stats.mean)} channels; stream shape "
                    f"{spec.shape} needs {spec.shape[-1]} (one per last-axis channel)"
                )

    def _check_camera_map(self, cams: list[StreamSpec]) -> None:
        t = self.training
        if not t.camera_map:
            return
        if t.camera_map_stream not in {s.name for s in cams}:
            raise ConfigError(
                f"training.camera_map_stream {t.camera_map_stream!r} is not a camera stream of "
                f"this config (cameras: {[s.name for s in cams]}); name the camera fixed to the "
                "base, or set training.camera_map = 0"
            )
        if not (self.camera.film or self.camera.pixel_film):
            raise ConfigError(
                "training.camera_map needs camera.film or camera.pixel_film = true: without the "
                "instruction in the stem, a map cannot single out the named block; set one, or "
                "camera_map = 0"
            )
        if self.camera.stem_channels[-1] < len(t.camera_maps):
            raise ConfigError(
                f"training.camera_map trains {len(t.camera_maps)} channels of the stem's last "
                f"layer, which has {self.camera.stem_channels[-1]}; widen camera.stem_channels"
            )

    def _check_stream(self, s: StreamSpec) -> None:
        where = f"stream {s.name!r}"
        if s.modality in IMAGE_MODALITIES:
            if len(s.shape) != 3:
                raise ConfigError(f"{where}: a camera must have shape (H, W, C), got {s.shape}")
        elif s.modality in POINT_MODALITIES:
            if len(s.shape) != 2 or s.shape[1] < 3:
                raise ConfigError(
                    f"{where}: a lidar must have shape (N, C >= 3) points, got {s.shape}"
                )
            if s.history != 1:
                raise ConfigError(f"{where}: lidar history > 1 is not supported, got {s.history}")
            if self.lidar.encoder == "scan" and s.shape[0] % self.lidar.tokens:
                raise ConfigError(
                    f"{where}: lidar.tokens {self.lidar.tokens} must divide the {s.shape[0]} rays "
                    "of the scan (one token per equal angular sector)"
                )
            if self.lidar.encoder == "points" and (
                self.lidar.groups > s.shape[0] or self.lidar.group_size > s.shape[0]
            ):
                raise ConfigError(
                    f"{where}: lidar.groups {self.lidar.groups} and lidar.group_size "
                    f"{self.lidar.group_size} must be <= the {s.shape[0]} points of the scan"
                )
        elif s.modality in VECTOR_MODALITIES:
            if s.np_dtype.kind != "f" or len(s.shape) != 1:
                raise ConfigError(
                    f"{where}: a {s.modality} stream must be a float vector (dim,), got {s.dtype} {s.shape}"
                )
        else:
            raise ConfigError(
                f"{where}: modality {s.modality!r} has no encoder in the fusion policy; "
                f"supported: {IMAGE_MODALITIES + POINT_MODALITIES + VECTOR_MODALITIES}"
            )

    @property
    def ordered_streams(self) -> tuple[StreamSpec, ...]:
        """Streams in token order: cameras, lidar, force, joints, gripper, other; spec order within."""
        return tuple(s for m in MODALITY_ORDER for s in self.streams if s.modality == m)

    @classmethod
    def from_dict(cls, data: Mapping[str, object], where: str = "policy config") -> PolicyConfig:
        """Build from a TOML/JSON mapping; unknown keys and bad values raise :class:`ConfigError`."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a table, got {type(data).__name__}")
        sections = {
            "model": ModelConfig,
            "language": LanguageConfig,
            "camera": CameraConfig,
            "lidar": LidarConfig,
            "vector": VectorConfig,
            "action": ActionConfig,
            "training": TrainingConfig,
        }
        known = set(sections) | {"streams", "normalization", "format_version"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}"
            )
        kwargs: dict[str, Any] = {
            k: section_from_dict(c, data[k], f"{where} [{k}]")
            for k, c in sections.items()
            if k in data
        }
        streams = data.get("streams")
        if not isinstance(streams, list):
            raise ConfigError(
                f"{where}: 'streams' must be a list of stream tables ([[streams]] in TOML)"
            )
        kwargs["streams"] = tuple(
            StreamSpec.from_dict(s, where=f"{where} streams[{i}]") if isinstance(s, Mapping) else s
            for i, s in enumerate(streams)
        )
        norm = data.get("normalization", {})
        if not isinstance(norm, Mapping):
            raise ConfigError(
                f"{where}: 'normalization' must be a table of stream name = {{mean, std}}"
            )
        kwargs["normalization"] = {
            k: section_from_dict(NormStats, v, f"{where} [normalization.{k}]")
            for k, v in norm.items()
        }
        if "format_version" in data:
            kwargs["format_version"] = data["format_version"]
        return cls(**kwargs)

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping that :meth:`from_dict` reads back (bin edges included)."""

        def plain(obj: object) -> dict[str, object]:
            out: dict[str, object] = {}
            for f in fields(obj):  # type: ignore[arg-type]
                v = getattr(obj, f.name)
                if isinstance(v, tuple):
                    v = [list(x) if isinstance(x, tuple) else x for x in v]
                elif isinstance(v, Mapping):
                    v = dict(v)
                out[f.name] = v
            return out

        return {
            "format_version": self.format_version,
            "model": plain(self.model),
            "language": plain(self.language),
            "camera": plain(self.camera),
            "lidar": plain(self.lidar),
            "vector": plain(self.vector),
            "action": plain(self.action),
            "training": plain(self.training),
            "normalization": {k: plain(v) for k, v in self.normalization.items()},
            "streams": [s.to_dict() for s in self.streams],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def replace(self, **changes: Any) -> PolicyConfig:
        """A copy with top-level fields replaced (validated again)."""
        kwargs = {f.name: getattr(self, f.name) for f in fields(self)}
        kwargs.update(changes)
        return PolicyConfig(**kwargs)


def load_policy_config(path: str | Path) -> PolicyConfig:
    """Read a policy config TOML file (``policies/default.toml``); unknown keys are errors.

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: the file is not valid TOML or a value is invalid (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy config {str(path)!r} not found; see policies/default.toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return PolicyConfig.from_dict(data, where=str(path))
