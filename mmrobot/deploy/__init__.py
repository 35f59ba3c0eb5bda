"""Deployment: ONNX export, the ONNX Runtime policy, the control loop and safety layer.

Importing this package imports numpy only. :class:`OnnxPolicy` needs onnxruntime but never
torch; :func:`export_onnx` (torch, onnx) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mmrobot.deploy.loop import ControlLoop, LoopConfig, LoopStats, TemporalEnsembler
from mmrobot.deploy.onnx_policy import OnnxPolicy, OrtConfig
from mmrobot.deploy.safety import SafetyEvent, SafetyLayer, SafetyLimits
from mmrobot.deploy.sidecar import SIDECAR_FORMAT_VERSION, Sidecar

if TYPE_CHECKING:
    from mmrobot.deploy.export import export_model, export_onnx

__all__ = [
    "SIDECAR_FORMAT_VERSION",
    "ControlLoop",
    "LoopConfig",
    "LoopStats",
    "OnnxPolicy",
    "OrtConfig",
    "SafetyEvent",
    "SafetyLayer",
    "SafetyLimits",
    "Sidecar",
    "TemporalEnsembler",
    "export_model",
    "export_onnx",
]

_LAZY = {"export_onnx": "mmrobot.deploy.export", "export_model": "mmrobot.deploy.export"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmrobot.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
