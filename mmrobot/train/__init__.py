"""Training and evaluation: behaviour cloning of the fusion policy on demonstrations
(single process or ``torchrun`` DDP), closed-loop evaluation in simulation, run plots, and
the release (``mmrobot release``: collect, train, evaluate, model card).

Imports torch and mujoco only when a training or evaluation function is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmrobot.train.config import TrainConfig, load_train_config

__all__ = [
    "TrainConfig",
    "Trainer",
    "TrainResult",
    "check_model_card",
    "load_release_config",
    "load_train_config",
    "modality_reliance",
    "plot_run",
    "run_release",
    "train",
]

_LAZY = {
    "Trainer": "mmrobot.train.trainer",
    "TrainResult": "mmrobot.train.trainer",
    "train": "mmrobot.train.trainer",
    "plot_run": "mmrobot.train.plot",
    "modality_reliance": "mmrobot.train.reliance",
    "run_release": "mmrobot.train.release",
    "load_release_config": "mmrobot.train.release",
    "check_model_card": "mmrobot.train.release",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmrobot.train' has no attribute {name!r}")
