"""The JSON sidecar written beside an exported ONNX policy (numpy and json only; no torch).

``policy.json`` says everything a runtime needs besides the graph: the observation spec and
the rest of the policy config (tokenizer, action bin edges, chunk length, normalization
statistics), the graph's input and output names, the precision, and the model file's size
and SHA-256 so a truncated or swapped file is caught before ONNX Runtime reads it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from mmrobot.core.errors import ConfigError
from mmrobot.policies.config import PolicyConfig

__all__ = [
    "SIDECAR_FORMAT_VERSION",
    "SIDECAR_FILE",
    "MODEL_FILE",
    "OUTPUT_NAMES",
    "PRECISIONS",
    "Sidecar",
    "file_sha256",
]

SIDECAR_FORMAT_VERSION = 1
SIDECAR_KIND = "mmrobot.onnx_policy"
SIDECAR_FILE = "policy.json"
MODEL_FILE = "policy.onnx"
OUTPUT_NAMES = ("action_logits", "action_tokens")
PRECISIONS = ("fp32", "int8", "fp16")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class Sidecar:
    """Contents of ``policy.json``.

    Attributes:
        config: the policy config (observation spec, tokenizer, action bins, normalization).
        input_names: graph inputs in order (from the observation spec).
        output_names: ``("action_logits", "action_tokens")``: (B, H, D, bins) float32 and
            (B, H, D) int64.
        precision: ``"fp32"``, ``"int8"`` (dynamic quantization) or ``"fp16"``.
        model_file: the ONNX file's name, relative to the sidecar.
        model_bytes: its size.
        model_sha256: its SHA-256.
        opset: ONNX opset of the graph.
        metadata: the checkpoint's metadata and export details.
    """

    config: PolicyConfig
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    precision: str
    model_file: str
    model_bytes: int
    model_sha256: str
    opset: int
    metadata: dict[str, object] = field(default_factory=dict)
    format_version: int = SIDECAR_FORMAT_VERSION

    def to_dict(self) -> dict[str, object]:
        a = self.config.action
        return {
            "kind": SIDECAR_KIND,
            "format_version": self.format_version,
            "model_file": self.model_file,
            "model_bytes": self.model_bytes,
            "model_sha256": self.model_sha256,
            "precision": self.precision,
            "opset": self.opset,
            "input_names": list(self.input_names),
            "output_names": list(self.output_names),
            # Readable summaries; "config" below is the authoritative copy.
            "observation_spec": [s.to_dict() for s in self.config.streams],
            "tokenizer": {
                "kind": self.config.language.tokenizer,
                "max_len": self.config.language.max_len,
            },
            "action": {
                "horizon": a.horizon,
                "dim": a.dim,
                "bins": a.bins,
                "period_ns": a.period_ns,
            },
            "config": self.config.to_dict(),
            "metadata": self.metadata,
        }

    def write(self, directory: Path) -> Path:
        path = Path(directory) / SIDECAR_FILE
        path.write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        return path

    @classmethod
    def read(cls, directory: str | Path) -> Sidecar:
        """Read and validate ``policy.json`` of an export folder (or the sidecar path itself).

        Raises:
            FileNotFoundError: no sidecar.
            ConfigError: not JSON, not an mmrobot ONNX policy, or a newer format version.
        """
        path = Path(directory)
        if path.is_dir():
            path = path / SIDECAR_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"no ONNX policy sidecar at {str(path)!r}; create one with "
                "`mmrobot export CHECKPOINT --out DIR`"
            )
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"{path}: not valid JSON ({e}); the file is corrupt or truncated"
            ) from e
        if not isinstance(doc, dict) or doc.get("kind") != SIDECAR_KIND:
            kind = doc.get("kind") if isinstance(doc, dict) else None
            raise ConfigError(f"{path}: not an mmrobot ONNX policy sidecar (kind {kind!r})")
        version = doc.get("format_version")
        if not isinstance(version, int) or not 1 <= version <= SIDECAR_FORMAT_VERSION:
            raise ConfigError(
                f"{path}: sidecar format_version {version!r} is not supported; this mmrobot reads "
                f"versions 1..{SIDECAR_FORMAT_VERSION} (upgrade mmrobot, or re-export the model "
                "with this version)"
            )
        try:
            config = PolicyConfig.from_dict(doc["config"], where=f"{path} config")
            precision = doc["precision"]
            if precision not in PRECISIONS:
                raise ConfigError(f"{path}: precision {precision!r} is not one of {PRECISIONS}")
            return cls(
                config=config,
                input_names=tuple(doc["input_names"]),
                output_names=tuple(doc["output_names"]),
                precision=precision,
                model_file=str(doc["model_file"]),
                model_bytes=int(doc["model_bytes"]),
                model_sha256=str(doc["model_sha256"]),
                opset=int(doc["opset"]),
                metadata=dict(doc.get("metadata", {})),
                format_version=version,
            )
        except KeyError as e:
            raise ConfigError(f"{path}: missing key {e.args[0]!r}; re-export the model") from e

    def model_path(self, directory: str | Path) -> Path:
        directory = Path(directory)
        return (directory if directory.is_dir() else directory.parent) / self.model_file

    def verify_model_file(self, directory: str | Path) -> Path:
        """The model path, after checking it exists and has the recorded size and hash.

        Raises:
            FileNotFoundError: the ONNX file is missing.
            ConfigError: its size or hash differs (truncated, corrupt or replaced).
        """
        path = self.model_path(directory)
        if not path.is_file():
            raise FileNotFoundError(
                f"ONNX model {str(path)!r} named by {SIDECAR_FILE} is missing; copy the whole "
                "export folder or re-run `mmrobot export`"
            )
        size = path.stat().st_size
        if size != self.model_bytes:
            raise ConfigError(
                f"ONNX model {path} has {size} bytes but the sidecar recorded {self.model_bytes}: "
                "the file is truncated or was replaced; copy it again or re-run `mmrobot export`"
            )
        if file_sha256(path) != self.model_sha256:
            raise ConfigError(
                f"ONNX model {path} does not match the SHA-256 in {SIDECAR_FILE}: the file is "
                "corrupt or was replaced; copy it again or re-run `mmrobot export`"
            )
        return path
