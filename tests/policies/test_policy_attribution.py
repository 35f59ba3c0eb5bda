"""Per-modality attribution (issue 15): attention rollout over the fusion transformer."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from policy_testlib import random_observation, tiny_batch, tiny_config  # noqa: E402

from mmrobot.core.errors import ConfigError  # noqa: E402
from mmrobot.policies import FusionPolicyModel, TorchPolicy  # noqa: E402
from mmrobot.policies.attribution import (  # noqa: E402
    attention_rollout,
    block_attention,
    explain_generate,
)

GROUPS = ["instruction", "cam_a", "cam_b", "lidar", "ft", "joints"]


def _policy(**kw) -> TorchPolicy:
    torch.manual_seed(0)
    return TorchPolicy(FusionPolicyModel(tiny_config(**kw)))


@pytest.mark.parametrize(
    ("fusion", "decoding"),
    [
        ("mid", "parallel"),
        ("mid", "autoregressive"),
        ("late", "parallel"),
        ("late", "autoregressive"),
    ],
)
def test_explained_chunk_has_the_same_actions_and_shares_sum_to_one(fusion, decoding):
    policy = _policy(fusion=fusion, decoding=decoding)
    obs = random_observation(policy.config.streams, np.random.default_rng(1))
    plain = policy.act(obs, "pick up the red cube")
    explained = policy.act(obs, "pick up the red cube", explain=True)
    assert plain.attribution is None
    np.testing.assert_array_equal(explained.actions, plain.actions)
    np.testing.assert_array_equal(explained.tokens, plain.tokens)
    a = explained.attribution
    assert list(a.shares) == GROUPS
    assert a.modalities["instruction"] == "text" and a.modalities["cam_a"] == "camera"
    assert sum(a.shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert all(v > 0 for v in a.shares.values())
    for cam in ("cam_a", "cam_b"):
        assert a.camera_maps[cam].shape == (2, 2)  # tiny_config: grid 2
        assert a.keypoint_shares[cam] > 0  # keypoints on by default: one extra token
        total = float(a.camera_maps[cam].sum()) + a.keypoint_shares[cam]
        assert total == pytest.approx(a.shares[cam], rel=1e-5)


@pytest.mark.parametrize("fusion", ["mid", "late"])
@pytest.mark.parametrize("stream", ["cam_b", "lidar", "ft"])
def test_masked_stream_share_is_exactly_zero(fusion, stream):
    policy = _policy(fusion=fusion)
    obs = random_observation(policy.config.streams, np.random.default_rng(2))
    obs = replace(obs, valid={**obs.valid, stream: False})
    a = policy.act(obs, "push the blue block", explain=True).attribution
    assert a.shares[stream] == 0.0
    assert sum(a.shares.values()) == pytest.approx(1.0, abs=1e-5)
    if stream == "cam_b":
        assert not a.camera_maps["cam_b"].any() and a.keypoint_shares["cam_b"] == 0.0


def test_explicit_weights_are_the_ones_sdpa_applies():
    torch.manual_seed(0)
    model = FusionPolicyModel(tiny_config()).eval()
    batch = tiny_batch(model.config, 2)
    tokens, valid, _, _, _ = model.encode(batch)
    x = torch.cat([tokens, model._action_inputs(2, None)], dim=1)
    bias = model.attention_bias(valid)
    blk = model.blocks[0]
    b, t, c = x.shape
    q, k, v = (
        blk.qkv(blk.norm1(x)).reshape(b, t, 3, blk.heads, c // blk.heads).permute(2, 0, 3, 1, 4)
    )
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    per_head = torch.softmax(q @ k.transpose(-2, -1) * (c // blk.heads) ** -0.5 + bias, -1)
    torch.testing.assert_close(per_head @ v, sdpa, atol=1e-5, rtol=1e-4)
    w = block_attention(blk, x, bias)
    torch.testing.assert_close(w, per_head.mean(1))
    torch.testing.assert_close(w.sum(-1), torch.ones(b, t), atol=1e-5, rtol=0)


def test_rollout_adds_the_residual_and_multiplies_layers():
    a1 = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    a2 = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    r1 = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    torch.testing.assert_close(attention_rollout([a1]), r1)
    # the second layer (identity attention) keeps the first layer's flow
    torch.testing.assert_close(attention_rollout([a1, a2]), r1)
    torch.testing.assert_close(attention_rollout([a2, a1]), r1)


def test_early_fusion_cannot_be_explained_by_modality():
    torch.manual_seed(0)
    model = FusionPolicyModel(tiny_config(fusion="early")).eval()
    with pytest.raises(ConfigError, match="early"):
        explain_generate(model, tiny_batch(model.config, 1))
