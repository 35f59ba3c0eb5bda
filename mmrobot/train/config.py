"""Training configuration: a validated TOML file (``policies/train_default.toml``).

Unknown keys are errors, every value is range-checked, and messages name the file and key.
Any key can be overridden on the command line as ``key=value`` (``steps=200``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mmrobot.core._toml import tomllib
from mmrobot.core.errors import ConfigError
from mmrobot.core.overrides import parse_override

__all__ = ["TrainConfig", "load_train_config"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train a policy by behaviour cloning.

    Attributes:
        policy: policy config file (network sizes, observation spec), relative to this file.
        dataset: demonstration dataset (HDF5 from ``mmrobot collect``), relative to this file.
        out: run folder (checkpoint, metrics.jsonl, train_state), relative to the working dir.
        steps: optimizer steps.
        batch_size: samples per step per process.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay (not applied to norms, biases, embeddings).
        warmup_steps: linear warm-up, then cosine decay to ``lr * min_lr_ratio``.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        grad_clip: clip the global gradient norm to this (0: off).
        ema_decay: exponential moving average of weights (0: off); the checkpoint holds it.
        seed: seeds sampling, augmentation and dropout; the same seed gives the same run.
        action_binning: "quantile" bins from the dataset's actions, or "uniform".
        augment: random shift and colour jitter of camera images.
        shift_px: largest random image shift, pixels.
        color_jitter: largest relative brightness/contrast change.
        log_every: steps between metric lines.
        save_every: steps between checkpoints (the last step always saves).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32" or "bf16" (autocast
            on either; on CPUs with AVX512-BF16 or AMX it trains about 1.6x faster).
        threads: torch CPU threads (0: torch's default).
    """

    policy: str = "default.toml"
    dataset: str = "../data/demos.h5"
    out: str = "runs/default"
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    seed: int = 0
    action_binning: str = "quantile"
    augment: bool = True
    shift_px: int = 4
    color_jitter: float = 0.1
    log_every: int = 10
    save_every: int = 500
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0
    # Where the file was read from; relative paths resolve against it.
    base_dir: str = "."

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise ConfigError(
                    f"train config: {name} = {getattr(self, name)!r}; expected {expected}"
                )

        for name in ("steps", "batch_size", "log_every", "save_every"):
            check(
                name,
                isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                "an int >= 1",
            )
        for name in ("warmup_steps", "seed", "shift_px", "threads"):
            check(
                name,
                isinstance(getattr(self, name), int) and getattr(self, name) >= 0,
                "an int >= 0",
            )
        check("lr", isinstance(self.lr, (int, float)) and 0 < self.lr < 1, "a number in (0, 1)")
        check("weight_decay", 0 <= self.weight_decay < 1, "a number in [0, 1)")
        check("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "a number in [0, 1]")
        check("grad_clip", self.grad_clip >= 0, "a number >= 0 (0 turns clipping off)")
        check("ema_decay", 0 <= self.ema_decay < 1, "a number in [0, 1) (0 turns EMA off)")
        check("color_jitter", 0 <= self.color_jitter < 1, "a number in [0, 1)")
        check(
            "action_binning",
            self.action_binning in ("quantile", "uniform"),
            "'quantile' or 'uniform'",
        )
        check("device", self.device in ("auto", "cpu", "cuda"), "'auto', 'cpu' or 'cuda'")
        check("precision", self.precision in ("auto", "fp32", "bf16"), "'auto', 'fp32' or 'bf16'")
        check("augment", isinstance(self.augment, bool), "true or false")

    def path(self, name: str) -> Path:
        """``policy`` or ``dataset`` resolved against the config file's folder."""
        p = Path(getattr(self, name))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def with_overrides(self, overrides: list[str]) -> TrainConfig:
        """Apply ``key=value`` strings (values parsed as TOML, bare words as strings)."""
        known = {f.name: f for f in fields(self) if f.name != "base_dir"}
        changes: dict[str, Any] = {}
        for item in overrides:
            key, value = parse_override(item, example="steps=200")
            if key not in known:
                raise ConfigError(f"override {item!r}: {key!r} is not one of {sorted(known)}")
            if isinstance(getattr(self, key), float) and isinstance(value, int):
                value = float(value)
            changes[key] = value
        return self.replace(**changes)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training config file (a ``[train]`` table)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"training config {str(path)!r} not found (try policies/train_default.toml)"
        )
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    unknown_top = sorted(set(doc) - {"train"})
    if unknown_top or "train" not in doc:
        raise ConfigError(f"{path}: expected one [train] table, found {sorted(doc)}")
    table = doc["train"]
    known = {f.name for f in fields(TrainConfig)} - {"base_dir"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{path} [train]: unknown key(s) {unknown}; expected some of {sorted(known)}"
        )
    try:
        return TrainConfig(**table, base_dir=str(path.parent))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
