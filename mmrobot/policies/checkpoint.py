"""Checkpoints: a folder with ``model.safetensors`` (weights) and ``config.json`` (everything else).

No pickle anywhere: loading parses JSON and reads raw tensors, so it never executes code.
``config.json`` holds the checkpoint format version, the full :class:`PolicyConfig` (the
observation spec, action bin edges, normalization statistics, tokenizer settings) and
free-form metadata. A weights file that does not match the network its config builds is
rejected with the names of the missing, unexpected and mis-shaped tensors.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError
from mmrobot.policies.config import PolicyConfig, format_version_error
from mmrobot.policies.model import FusionPolicyModel

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "CheckpointMismatchError",
    "copy_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_config",
    "rewrite_checkpoint_config",
]

# 2: the lean v2 network (see mmrobot.policies.config.CONFIG_FORMAT_VERSION); 1 was v0.
CHECKPOINT_FORMAT_VERSION = 2
CHECKPOINT_KIND = "mmrobot.fusion_policy"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointMismatchError(ConfigError):
    """The weights file does not fit the network built from the checkpoint's config."""


def save_checkpoint(
    model: FusionPolicyModel, directory: str | Path, metadata: Mapping[str, object] | None = None
) -> Path:
    """Write ``model`` to ``directory`` (created if needed); returns the directory.

    Args:
        model: the network; its ``config`` is written beside the weights.
        directory: target folder.
        metadata: JSON-serializable extras (training step, dataset name, metrics).
    """
    st = require("safetensors.torch", "saving policy checkpoints")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    doc = {
        "kind": CHECKPOINT_KIND,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "config": model.config.to_dict(),
        "metadata": dict(metadata or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # Write to temporary names first so a crash never leaves a half-written checkpoint.
    tmp_w, tmp_c = directory / (WEIGHTS_FILE + ".tmp"), directory / (CONFIG_FILE + ".tmp")
    st.save_file(state, str(tmp_w), metadata={"format_version": str(CHECKPOINT_FORMAT_VERSION)})
    tmp_c.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp_w.replace(directory / WEIGHTS_FILE)
    tmp_c.replace(directory / CONFIG_FILE)
    return directory


def copy_checkpoint(
    src: str | Path, dst: str | Path, metadata: Mapping[str, object] | None = None
) -> Path:
    """Copy a checkpoint's two files into ``dst`` (created if needed; other files there are
    left alone), each through a temporary name; ``metadata`` is merged into the copy's."""
    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_FILE, CONFIG_FILE):  # the config last: it names a complete copy
        tmp = dst / (name + ".tmp")
        if name == CONFIG_FILE and metadata:
            doc = json.loads((src / name).read_text(encoding="utf-8"))
            doc["metadata"] = {**doc.get("metadata", {}), **metadata}
            tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
        else:
            tmp.write_bytes((src / name).read_bytes())
        tmp.replace(dst / name)
    return dst


def rewrite_checkpoint_config(
    directory: str | Path, config: PolicyConfig, metadata: Mapping[str, object] | None = None
) -> Path:
    """Replace a checkpoint's config (the weights stay; they must still fit, so only
    settings outside the network change: a lexicon, not a width) and merge ``metadata``
    into its metadata. Written through a temporary name."""
    directory = Path(directory)
    old, meta = read_checkpoint_config(directory)

    def shapes(cfg: PolicyConfig) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in FusionPolicyModel(cfg).state_dict().items()}

    if shapes(old) != shapes(config):
        raise ConfigError(f"{directory}: the new config builds a different network")
    doc = {
        "kind": CHECKPOINT_KIND,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "config": config.to_dict(),
        "metadata": {**meta, **dict(metadata or {})},
    }
    tmp = directory / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(directory / CONFIG_FILE)
    return directory


def read_checkpoint_config(directory: str | Path) -> tuple[PolicyConfig, dict[str, object]]:
    """Parse and validate ``config.json`` of a checkpoint: (config, metadata)."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no {CONFIG_FILE} in {str(directory)!r}; a checkpoint folder holds {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"{path}: not valid JSON ({e}); the checkpoint is corrupt or truncated"
        ) from e
    kind = doc.get("kind") if isinstance(doc, dict) else type(doc).__name__
    if kind != CHECKPOINT_KIND:
        raise ConfigError(f"{path}: not an mmrobot policy checkpoint (kind {kind!r})")
    version = doc.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise ConfigError(format_version_error(f"checkpoint {path}", version))
    config = PolicyConfig.from_dict(doc.get("config", {}), where=f"{path} config")
    return config, dict(doc.get("metadata", {}))


def load_checkpoint(directory: str | Path, device: str | torch.device = "cpu") -> FusionPolicyModel:
    """Build the network from ``config.json`` and load ``model.safetensors`` into it (eval mode).

    Raises:
        FileNotFoundError: a file of the checkpoint is missing.
        ConfigError: the config is invalid or of a newer format version.
        CheckpointMismatchError: the weights do not match the config; the message lists the
            missing, unexpected and mis-shaped tensor names.
    """
    st = require("safetensors.torch", "loading policy checkpoints")
    directory = Path(directory)
    config, _ = read_checkpoint_config(directory)
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise FileNotFoundError(f"no {WEIGHTS_FILE} in {str(directory)!r}")
    try:
        state = st.load_file(str(weights), device="cpu")
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise ConfigError(
            f"{weights}: cannot read the weights ({e}); the file is corrupt or truncated"
        ) from e
    model = FusionPolicyModel(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if state[k].shape != expected[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing from the file: {missing}")
        if unexpected:
            parts.append(f"not in the network the config builds: {unexpected}")
        if shapes:
            parts.append(f"shape mismatch: {shapes}")
        raise CheckpointMismatchError(
            f"{weights} does not match {directory / CONFIG_FILE}: " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
