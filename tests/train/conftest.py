"""Shared fixtures of the training and evaluation tests."""

from __future__ import annotations

import pytest
from train_testlib import tiny_specs


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A freshly initialized small fusion policy whose streams match :func:`tiny_specs`."""
    torch = pytest.importorskip("torch")
    from mmrobot.policies import FusionPolicyModel, PolicyConfig, save_checkpoint

    cfg = PolicyConfig.from_dict(
        {
            "model": {"width": 32, "depth": 1, "heads": 2, "dropout": 0.0},
            "language": {"max_len": 32},
            "camera": {"stem_channels": [8], "grid": 2},
            "lidar": {"groups": 8, "group_size": 8, "hidden": 16},
            "vector": {"hidden": 32, "tokens": 1},
            "action": {"horizon": 4, "bins": 16},
            "streams": [s.to_dict() for s in tiny_specs()],
        }
    )
    torch.manual_seed(0)
    return save_checkpoint(FusionPolicyModel(cfg), tmp_path_factory.mktemp("ckpt") / "tiny")
