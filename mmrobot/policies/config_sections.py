"""The sections of a policy config, each a frozen dataclass that checks its values: model
sizes and modes, language, camera, lidar and vector encoders, action bins, training-time
heads and dropout, normalization statistics (see :mod:`mmrobot.policies.config`).

Imports numpy only, so the ONNX Runtime policy can read the same config without torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import MODALITIES

__all__ = [
    "AUX_TARGETS",
    "DECODING_MODES",
    "FUSION_MODES",
    "IMAGE_MODALITIES",
    "LIDAR_ENCODERS",
    "MODALITY_ORDER",
    "POINT_MODALITIES",
    "VECTOR_MODALITIES",
    "ActionConfig",
    "CameraConfig",
    "LanguageConfig",
    "LidarConfig",
    "ModelConfig",
    "NormStats",
    "TrainingConfig",
    "VectorConfig",
    "section_from_dict",
]

LIDAR_ENCODERS = ("scan", "points")
FUSION_MODES = ("mid", "early", "late")
DECODING_MODES = ("parallel", "autoregressive")
IMAGE_MODALITIES = ("camera",)
POINT_MODALITIES = ("lidar",)
VECTOR_MODALITIES = ("force", "joints", "gripper", "other")
# Order of modality blocks in the token sequence (after the instruction tokens).
MODALITY_ORDER = IMAGE_MODALITIES + POINT_MODALITIES + VECTOR_MODALITIES


def _check_int(where: str, name: str, value: object, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}.{name} must be an int, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"{where}.{name} must be {bound}, got {value}")


def _check_float(where: str, name: str, value: object, lo: float, hi: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}.{name} must be a finite number, got {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}.{name} must be in [{lo}, {hi}], got {value}")


def _check_choice(where: str, name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{where}.{name} is {value!r}; expected one of {choices}")


def section_from_dict(cls: type, data: object, where: str) -> Any:
    """Build the dataclass ``cls`` from a mapping; unknown keys are errors, lists become tuples."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(known)}")
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as e:  # a wrong type that __post_init__ did not catch
        raise ConfigError(f"{where}: {e}") from e


@dataclass(frozen=True)
class ModelConfig:
    """Transformer sizes and the fusion/decoding modes (see ``policies/default.toml``)."""

    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    fusion: str = "mid"
    decoding: str = "parallel"
    early_tokens: int = 8
    early_dim: int = 16

    def __post_init__(self) -> None:
        w = "model"
        _check_int(w, "width", self.width, 8, 4096)
        _check_int(w, "depth", self.depth, 1, 64)
        _check_int(w, "heads", self.heads, 1, 64)
        if self.width % self.heads:
            raise ConfigError(
                f"model.width {self.width} is not a multiple of model.heads {self.heads}"
            )
        _check_float(w, "mlp_ratio", self.mlp_ratio, 0.25, 16.0)
        _check_float(w, "dropout", self.dropout, 0.0, 0.9)
        _check_choice(w, "fusion", self.fusion, FUSION_MODES)
        _check_choice(w, "decoding", self.decoding, DECODING_MODES)
        _check_int(w, "early_tokens", self.early_tokens, 1, 256)
        _check_int(w, "early_dim", self.early_dim, 1, 1024)


@dataclass(frozen=True)
class LanguageConfig:
    """Instruction tokenizer: ``"byte"`` (UTF-8 bytes, no vocabulary file), its length in
    bytes, how many bytes one instruction token merges (``max_len / stride`` tokens), and
    ``layers``: self-attention blocks over the instruction tokens before they condition the
    cameras (FiLM) and enter fusion. With 0, the camera condition is a mean of tokens that
    see only their neighbours, which cannot tell "stack red on yellow" from "stack yellow
    on red".

    ``vocabulary`` and ``lexicon``: the training instructions' words and a table of other
    words that mean them (built from WordNet by ``mmrobot policy lexicon``); when present,
    every instruction is rewritten into training words before it is tokenized (see
    :mod:`mmrobot.policies.lexicon`). Empty: instructions are read as they are."""

    tokenizer: str = "byte"
    max_len: int = 64
    stride: int = 4
    layers: int = 0
    vocabulary: tuple[str, ...] = ()
    lexicon: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice("language", "tokenizer", self.tokenizer, ("byte",))
        _check_int("language", "max_len", self.max_len, 2, 4096)
        _check_int("language", "stride", self.stride, 1, 64)
        _check_int("language", "layers", self.layers, 0, 8)
        if not isinstance(self.lexicon, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.lexicon.items()
        ):
            raise ConfigError("language.lexicon must be a table of word = training word")
        stray = sorted(set(self.lexicon.values()) - set(self.vocabulary))
        if stray:
            raise ConfigError(
                f"language.lexicon maps to {stray[:5]}, which are not in language.vocabulary; "
                "rebuild it with `mmrobot policy lexicon`"
            )
        if self.max_len % self.stride:
            raise ConfigError(
                f"language.max_len {self.max_len} must be a multiple of language.stride "
                f"{self.stride} (each token merges `stride` bytes)"
            )

    @property
    def n_tokens(self) -> int:
        return self.max_len // self.stride


@dataclass(frozen=True)
class CameraConfig:
    """Convolutional stem shared by all cameras: stride-2 conv channels, then a grid x grid
    patchify, plus one token of spatial-softmax keypoints (``keypoints``); with ``film``, the
    instruction modulates every stem layer's channels (FiLM); with ``pixel_film``, each
    pixel by the instruction tokens it attends to (with ``film`` or without), in the stem
    layers from ``pixel_film_from`` on."""

    stem_channels: tuple[int, ...] = (16, 32)
    grid: int = 4
    keypoints: bool = True
    # off when absent, so that configs written before FiLM existed load unchanged
    film: bool = False
    # 1.0 when absent, as before the key existed
    keypoint_temperature: float = 1.0
    # off when absent: per-pixel FiLM from cross-attention to the instruction tokens
    pixel_film: bool = False
    # the first stem layer (from 0) with per-pixel FiLM; the layers before it go without
    # (each layer has 4x the pixels of the next, so the first costs the most). 0 when absent
    pixel_film_from: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.stem_channels, tuple) or not self.stem_channels:
            raise ConfigError(
                f"camera.stem_channels must be a non-empty list, got {self.stem_channels!r}"
            )
        for c in self.stem_channels:
            _check_int("camera", "stem_channels[]", c, 1, 4096)
        _check_int("camera", "grid", self.grid, 1, 64)
        _check_float("camera", "keypoint_temperature", self.keypoint_temperature, 0.01, 1000.0)
        for key in ("keypoints", "film", "pixel_film"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"camera.{key} must be true or false, got {getattr(self, key)!r}")
        _check_int("camera", "pixel_film_from", self.pixel_film_from, 0, 4096)
        if self.pixel_film_from >= len(self.stem_channels):
            raise ConfigError(
                f"camera.pixel_film_from = {self.pixel_film_from} is past the stem's last layer "
                f"(stem_channels has {len(self.stem_channels)}: 0 to "
                f"{len(self.stem_channels) - 1})"
            )


@dataclass(frozen=True)
class LidarConfig:
    """Lidar encoder. ``"scan"``: 1-D convolution over a planar scan's angular profile,
    ``tokens`` sectors. ``"points"``: Point-BERT grouping for 3-D clouds, ``groups`` FPS
    centres with ``group_size`` neighbours each."""

    encoder: str = "scan"
    tokens: int = 8
    groups: int = 32
    group_size: int = 16
    hidden: int = 32

    def __post_init__(self) -> None:
        _check_choice("lidar", "encoder", self.encoder, LIDAR_ENCODERS)
        _check_int("lidar", "tokens", self.tokens, 1, 4096)
        _check_int("lidar", "groups", self.groups, 1, 4096)
        _check_int("lidar", "group_size", self.group_size, 1, 4096)
        _check_int("lidar", "hidden", self.hidden, 1, 4096)


@dataclass(frozen=True)
class VectorConfig:
    """MLP over a (history, dim) window of a force/joints/gripper/other stream."""

    hidden: int = 128
    tokens: int = 1

    def __post_init__(self) -> None:
        _check_int("vector", "hidden", self.hidden, 1, 8192)
        _check_int("vector", "tokens", self.tokens, 1, 64)


#: How action logits become actions (:meth:`mmrobot.policies.ActionTokenizer.decode_logits`).
ACTION_DECODINGS = ("argmax", "median", "mean")


@dataclass(frozen=True)
class ActionConfig:
    """Action space and its discretization.

    ``decode`` says which action a chunk step's per-dimension bin distribution gives: its
    most probable bin (``"argmax"``), its median (``"median"``) or its mean (``"mean"``), each
    at bin centres (see :meth:`mmrobot.policies.ActionTokenizer.decode_logits`); one string
    for every dimension, or a list of one per dimension.

    ``edges`` ((dim, bins + 1) bin edges, strictly increasing per dim) is filled from
    ``low``/``high`` for uniform bins, or from dataset quantiles by
    :meth:`mmrobot.policies.ActionTokenizer.from_quantiles`; checkpoints store it explicitly.
    """

    dim: int = 7
    horizon: int = 8
    bins: int = 256
    low: tuple[float, ...] = (-0.02, -0.02, -0.02, -0.1, -0.1, -0.1, 0.0)
    high: tuple[float, ...] = (0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0)
    period_ns: int = 50_000_000
    binning: str = "uniform"
    edges: tuple[tuple[float, ...], ...] | None = None
    decode: str | tuple[str, ...] = "argmax"

    def __post_init__(self) -> None:
        w = "action"
        if isinstance(self.decode, tuple):
            if len(self.decode) != self.dim:
                raise ConfigError(
                    f"action.decode lists {len(self.decode)} decodings; give one per action "
                    f"dimension ({self.dim}), or one string for all"
                )
            for d in self.decode:
                _check_choice(w, "decode", d, ACTION_DECODINGS)
        else:
            _check_choice(w, "decode", self.decode, ACTION_DECODINGS)
        _check_int(w, "dim", self.dim, 1, 1024)
        _check_int(w, "horizon", self.horizon, 1, 1024)
        _check_int(w, "bins", self.bins, 2, 65536)
        _check_int(w, "period_ns", self.period_ns, 1)
        _check_choice(w, "binning", self.binning, ("uniform", "quantile"))
        for name in ("low", "high"):
            v = getattr(self, name)
            if not isinstance(v, tuple) or len(v) != self.dim:
                raise ConfigError(
                    f"action.{name} must be a list of {self.dim} numbers (action.dim), got {v!r}"
                )
            if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v):
                raise ConfigError(f"action.{name} must hold finite numbers, got {v!r}")
            object.__setattr__(self, name, tuple(float(x) for x in v))
        bad = [i for i in range(self.dim) if not self.low[i] < self.high[i]]
        if bad:
            raise ConfigError(f"action.low must be < action.high in every dim; not in dim(s) {bad}")
        if self.edges is None:
            if self.binning == "quantile":
                raise ConfigError(
                    "action.binning = 'quantile' needs action.edges computed from data "
                    "(ActionTokenizer.from_quantiles); use 'uniform' in a hand-written config"
                )
            edges = np.linspace(self.low, self.high, self.bins + 1, axis=1)
        else:
            try:
                edges = np.asarray(self.edges, dtype=np.float64)
            except ValueError as e:
                raise ConfigError(
                    f"action.edges must be a (dim, bins + 1) table of numbers: {e}"
                ) from e
            if edges.shape != (self.dim, self.bins + 1):
                raise ConfigError(
                    f"action.edges has shape {edges.shape}, expected (dim, bins + 1) = "
                    f"({self.dim}, {self.bins + 1})"
                )
            if not np.all(np.isfinite(edges)) or not np.all(np.diff(edges, axis=1) > 0):
                raise ConfigError(
                    "action.edges must be finite and strictly increasing along each dim"
                )
        object.__setattr__(self, "edges", tuple(tuple(float(x) for x in row) for row in edges))

    @property
    def edges_array(self) -> np.ndarray:
        """(dim, bins + 1) float64 bin edges."""
        return np.asarray(self.edges, dtype=np.float64)

    @property
    def n_tokens(self) -> int:
        """Action tokens per chunk: horizon x dim."""
        return self.horizon * self.dim


#: Privileged targets that training-only heads can predict: name -> (kind, size). The
#: dataset stores them per step (``mmrobot collect``); deployment never needs them.
#: ``block_rel``/``goal_rel``: the named block's / the goal's position minus the gripper's
#: (m); ``held``: the block is in the gripper (0/1); ``phase``: the scripted expert's phase
#: index (classes; at most this many); ``block_yaw``: the tool's turn to the named block's
#: faces as ``(sin 4 phi, cos 4 phi)`` (an angle on the unit circle).
AUX_TARGETS: dict[str, tuple[str, int]] = {
    "block_rel": ("vector", 3),
    "goal_rel": ("vector", 3),
    "held": ("binary", 1),
    "phase": ("class", 16),
    "block_yaw": ("angle", 2),
}


@dataclass(frozen=True)
class TrainingConfig:
    """Training-time behaviour stored with the model: modality dropout and auxiliary heads.

    ``modality_dropout`` maps a modality name (``"camera"``, ``"lidar"``, ...) to the
    probability that a stream of that modality is marked invalid for one training sample.
    ``aux_weights`` maps an :data:`AUX_TARGETS` name to its loss weight (0 or absent: no head).
    ``encoder_aux`` adds a camera head per position target (``block_rel``, ``goal_rel``)
    that predicts the position in the base frame from the cameras and the instruction only,
    before fusion, with the same weight; the dataset must carry the ``tcp`` target.
    ``camera_yaw`` (with ``encoder_aux``) adds one more camera head, for ``block_yaw`` (the
    tool's turn to the named block's faces, which the wrist camera shows once over the block),
    with this loss weight (0: none).
    ``camera_map`` (with ``encoder_aux``): each camera position target also trains a map,
    with this loss weight (0: none): the spatial softmax of one channel of the camera stem's
    last layer (channel k for the k-th of :attr:`camera_position_heads`) in the images of
    ``camera_map_stream``, a camera fixed to the base, is trained to peak where that
    position lies in its image (cross-entropy against the projected point). That channel's
    keypoint is then the block's image position: a per-pixel signal where a position head
    has three numbers.
    """

    modality_dropout: Mapping[str, float] = field(default_factory=dict)
    aux_weights: Mapping[str, float] = field(default_factory=dict)
    # off when absent, as in configs written before the keys existed
    encoder_aux: bool = False
    camera_yaw: float = 0.0
    camera_map: float = 0.0
    camera_map_stream: str = "scene_cam"

    def __post_init__(self) -> None:
        for name in ("modality_dropout", "aux_weights"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"training.{name} must be a table of name = number")
        for k, p in self.modality_dropout.items():
            if k not in MODALITIES:
                raise ConfigError(
                    f"training.modality_dropout: {k!r} is not a modality; expected one of {MODALITIES}"
                )
            _check_float("training.modality_dropout", k, p, 0.0, 1.0)
        for k, wt in self.aux_weights.items():
            if k not in AUX_TARGETS:
                raise ConfigError(
                    f"training.aux_weights: {k!r} is not an auxiliary target; expected some of "
                    f"{sorted(AUX_TARGETS)}"
                )
            _check_float("training.aux_weights", k, wt, 0.0, 100.0)
        if not isinstance(self.encoder_aux, bool):
            raise ConfigError(
                f"training.encoder_aux must be true or false, got {self.encoder_aux!r}"
            )
        _check_float("training", "camera_yaw", self.camera_yaw, 0.0, 100.0)
        if self.camera_yaw and not self.encoder_aux:
            raise ConfigError(
                f"training.camera_yaw = {self.camera_yaw} adds a camera head, but camera heads "
                "need training.encoder_aux = true; set it, or camera_yaw = 0"
            )
        _check_float("training", "camera_map", self.camera_map, 0.0, 100.0)
        if self.camera_map and not self.camera_position_heads:
            raise ConfigError(
                f"training.camera_map = {self.camera_map} trains a map per camera position head, "
                "but there are none: set training.encoder_aux = true and a weight for block_rel "
                "or goal_rel in training.aux_weights, or camera_map = 0"
            )
        if not isinstance(self.camera_map_stream, str) or not self.camera_map_stream:
            raise ConfigError(
                "training.camera_map_stream must be a camera stream's name, got "
                f"{self.camera_map_stream!r}"
            )
        object.__setattr__(
            self, "modality_dropout", {k: float(v) for k, v in self.modality_dropout.items()}
        )
        object.__setattr__(self, "aux_weights", {k: float(v) for k, v in self.aux_weights.items()})
        object.__setattr__(self, "camera_yaw", float(self.camera_yaw))
        object.__setattr__(self, "camera_map", float(self.camera_map))

    @property
    def camera_heads(self) -> dict[str, float]:
        """Target name -> loss weight of each camera head (``encoder_aux``): the position
        targets with a weight, then ``block_yaw`` with ``camera_yaw``."""
        if not self.encoder_aux:
            return {}
        heads = {n: self.aux_weights[n] for n in self.camera_position_heads}
        if self.camera_yaw:
            heads["block_yaw"] = self.camera_yaw
        return heads

    @property
    def camera_position_heads(self) -> list[str]:
        """The camera heads that predict a base-frame position (their targets need ``tcp``)."""
        if not self.encoder_aux:
            return []
        return [n for n, w in self.aux_weights.items() if w > 0 and AUX_TARGETS[n][0] == "vector"]

    @property
    def camera_maps(self) -> list[str]:
        """The position targets with a camera map (``camera_map``), in channel order."""
        return self.camera_position_heads if self.camera_map else []

    @property
    def loss_weights(self) -> dict[str, float]:
        """Head -> loss weight: each fused head by its target's name, each camera head as
        ``camera/<name>``, each camera map as ``camera_map/<name>`` (the names of
        ``FusionPolicyModel.forward``'s predictions)."""
        fused = {n: w for n, w in self.aux_weights.items() if w > 0}
        cameras = {f"camera/{n}": w for n, w in self.camera_heads.items()}
        maps = {f"camera_map/{n}": self.camera_map for n in self.camera_maps}
        return {**fused, **cameras, **maps}


@dataclass(frozen=True)
class NormStats:
    """Per-channel mean and std of one stream (over its last axis), applied inside the model."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            v = getattr(self, name)
            if (
                not isinstance(v, tuple)
                or not v
                or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in v)
            ):
                raise ConfigError(
                    f"normalization {name} must be a non-empty list of finite numbers, got {v!r}"
                )
            object.__setattr__(self, name, tuple(float(x) for x in v))
        if len(self.mean) != len(self.std):
            raise ConfigError(
                f"normalization mean has {len(self.mean)} values but std has {len(self.std)}"
            )
        if min(self.std) <= 0:
            raise ConfigError(f"normalization std must be > 0, got {self.std}")

    @classmethod
    def from_data(cls, values: np.ndarray, min_std: float = 1e-6) -> NormStats:
        """Statistics over every axis but the last of ``values`` (..., C)."""
        flat = np.asarray(values, dtype=np.float64).reshape(-1, np.shape(values)[-1])
        return cls(tuple(flat.mean(0)), tuple(np.maximum(flat.std(0), min_std)))
