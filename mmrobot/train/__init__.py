"""Training and evaluation: behaviour cloning of the fusion policy on demonstrations
(single process or ``torchrun`` DDP), closed-loop evaluation in simulation, run plots.

Imports torch and mujoco only when a training or evaluation function is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmrobot.train.config import TrainConfig, load_train_config

__all__ = ["TrainConfig", "Trainer", "TrainResult", "load_train_config", "plot_run", "train"]

_LAZY = {
    "Trainer": "mmrobot.train.trainer",
    "TrainResult": "mmrobot.train.trainer",
    "train": "mmrobot.train.trainer",
    "plot_run": "mmrobot.train.plot",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmrobot.train' has no attribute {name!r}")
