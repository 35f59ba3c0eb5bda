"""The fusion policy: tokenizers, modality encoders, the fusion transformer, action tokens.

Importing this package (and its ``base``, ``config``, ``tokenizers`` and ``collate``
modules) needs numpy only, so the ONNX Runtime policy can reuse them without torch. The
torch parts (:class:`FusionPolicyModel`, :class:`TorchPolicy`, checkpoints) are imported
on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mmrobot.policies.base import Policy
from mmrobot.policies.collate import INSTRUCTION_MASK, INSTRUCTION_TOKENS, collate, input_names
from mmrobot.policies.config import NormStats, PolicyConfig, load_policy_config
from mmrobot.policies.tokenizers import ActionTokenizer, ByteTokenizer

if TYPE_CHECKING:
    from mmrobot.policies.checkpoint import (
        CheckpointMismatchError,
        load_checkpoint,
        read_checkpoint_config,
        save_checkpoint,
    )
    from mmrobot.policies.model import FusionPolicyModel, batch_to_torch
    from mmrobot.policies.torch_policy import TorchPolicy

__all__ = [
    "INSTRUCTION_MASK",
    "INSTRUCTION_TOKENS",
    "ActionTokenizer",
    "ByteTokenizer",
    "CheckpointMismatchError",
    "FusionPolicyModel",
    "NormStats",
    "Policy",
    "PolicyConfig",
    "TorchPolicy",
    "batch_to_torch",
    "collate",
    "input_names",
    "load_checkpoint",
    "load_policy_config",
    "read_checkpoint_config",
    "save_checkpoint",
]

# Names served lazily (they import torch) -> their module.
_LAZY = {
    "FusionPolicyModel": "mmrobot.policies.model",
    "batch_to_torch": "mmrobot.policies.model",
    "TorchPolicy": "mmrobot.policies.torch_policy",
    "CheckpointMismatchError": "mmrobot.policies.checkpoint",
    "load_checkpoint": "mmrobot.policies.checkpoint",
    "read_checkpoint_config": "mmrobot.policies.checkpoint",
    "save_checkpoint": "mmrobot.policies.checkpoint",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mmrobot.policies' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
