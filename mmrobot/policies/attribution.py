"""Per-modality attribution of a decision: attention rollout over the fusion transformer.

Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers",
section 3): average each layer's attention over heads, add the identity for the residual
connection (``0.5 * A + 0.5 * I``), renormalize the rows, and multiply the layers from the
last to the first. Row ``i`` of the product says how much of token ``i``'s output flows from
each input token.

Here the rows are the action positions and the columns the observation and instruction
tokens as they enter the fusion transformer (after the modality encoders, so a camera's
share includes what its FiLM conditioning took from the instruction). Each action row is
renormalized over the valid observation tokens (the share an action position keeps of its
own query is left out), the rows are averaged, and the tokens are summed by input group
(the instruction, then every stream by name), so the shares sum to 1 and a masked stream,
whose keys carry the additive mask, gets exactly 0.

The normal path uses :func:`torch.nn.functional.scaled_dot_product_attention`, which does
not return its weights; :func:`explain_generate` records every fusion block's input and
mask with forward pre-hooks and recomputes the weights explicitly afterwards, so nothing
changes on the path that ``act()`` takes without ``explain``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Attribution
from mmrobot.policies.config import IMAGE_MODALITIES
from mmrobot.policies.model import FusionPolicyModel

__all__ = ["attention_rollout", "attributions", "block_attention", "explain_generate"]

# A key with an additive bias below this is masked (the model's mask value is -1e4).
_MASK_THRESHOLD = -1e3


def block_attention(block: nn.Module, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A fusion block's attention weights, averaged over heads.

    Args:
        block: a :class:`~mmrobot.policies.model.Block`.
        x: (B, T, width) the block's input.
        bias: (B, 1, T, T) its additive attention mask.

    Returns:
        (B, T, T) float32, rows summing to 1.
    """
    b, t, c = x.shape
    h = block.heads  # type: ignore[attr-defined]
    q, k, _ = (
        block.qkv(block.norm1(x))  # type: ignore[operator]
        .reshape(b, t, 3, h, c // h)
        .permute(2, 0, 3, 1, 4)
    )
    scores = (q @ k.transpose(-2, -1)) * (c // h) ** -0.5 + bias
    return torch.softmax(scores.float(), dim=-1).mean(1)


def attention_rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    """Attention rollout of per-layer (B, T, T) head-averaged weights, first layer first.

    Returns:
        (B, T, T): ``A'_L @ ... @ A'_1`` with ``A'_l = rownorm(0.5 * A_l + 0.5 * I)``.
    """
    eye = torch.eye(maps[0].shape[-1], dtype=maps[0].dtype, device=maps[0].device)
    out = eye.expand_as(maps[0])
    for a in maps:
        a = 0.5 * a + 0.5 * eye
        out = (a / a.sum(-1, keepdim=True)) @ out
    return out


@contextmanager
def _record_blocks(model: FusionPolicyModel) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Record (input, mask) of every call of the fusion blocks while the context is open."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def hook(_module: nn.Module, args: tuple) -> None:
        seen.append((args[0], args[1]))

    handles = [blk.register_forward_pre_hook(hook) for blk in model.blocks]
    try:
        yield seen
    finally:
        for hd in handles:
            hd.remove()


def explain_generate(
    model: FusionPolicyModel, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, list[Attribution]]:
    """:meth:`FusionPolicyModel.generate` plus one :class:`Attribution` per batch row.

    A parallel model's attention is recorded during its one decoding pass; an autoregressive
    model decodes as usual, then runs one teacher-forced pass on its own tokens (the same
    attention as the cached steps) to record it.

    Raises:
        ConfigError: for ``fusion = "early"``, whose fused tokens mix every modality.
    """
    if model.config.model.fusion == "early":
        raise ConfigError(
            "explain needs per-modality tokens; fusion = 'early' projects every modality into "
            "shared tokens, so its attention cannot be split by modality (use 'mid' or 'late')"
        )
    if model.autoregressive:
        tokens, logits = model.generate(batch)
        with _record_blocks(model) as seen:
            model._run(batch, tokens)
    else:
        with _record_blocks(model) as seen:
            tokens, logits = model.generate(batch)
    maps = [block_attention(blk, x, bias) for blk, (x, bias) in zip(model.blocks, seen)]
    return tokens, logits, attributions(model, attention_rollout(maps), seen[0][1])


def attributions(
    model: FusionPolicyModel, rollout: torch.Tensor, bias: torch.Tensor
) -> list[Attribution]:
    """Group a (B, T, T) rollout into one :class:`Attribution` per batch row.

    ``bias`` is the fusion blocks' (B, 1, T, T) mask: a token is valid when some action
    position may attend to it.
    """
    t_obs, m = model.n_obs_tokens, model.n_branches
    act_bias = bias[:, 0, t_obs:, :t_obs]  # (B, P * branches, T_obs)
    allowed = act_bias > _MASK_THRESHOLD
    rows = rollout[:, t_obs:, :t_obs] * allowed
    rows = rows / rows.sum(-1, keepdim=True).clamp(min=1e-30)
    # Late fusion averages the logits of the valid branches only: count only their rows.
    n_text = model.instruction_encoder.n_tokens
    row_w = torch.ones(rows.shape[:2], dtype=rows.dtype, device=rows.device)
    if m > 1:
        branch = torch.arange(rows.shape[1], device=rows.device) % m
        starts = np.cumsum([n_text, *model.stream_tokens])
        own = torch.stack(
            [allowed[:, :, starts[i] : starts[i + 1]].any(-1) for i in range(m)], dim=-1
        )  # (B, rows, branches): the branch's own stream has a valid token
        row_w = own.gather(-1, branch.expand(own.shape[0], -1).unsqueeze(-1))[..., 0].to(rows)
        row_w = torch.where(row_w.sum(1, keepdim=True) > 0, row_w, torch.ones_like(row_w))
    token_share = (rows * row_w.unsqueeze(-1)).sum(1) / row_w.sum(1, keepdim=True)
    token_share = torch.where(allowed.any(1), token_share, torch.zeros_like(token_share))
    share = token_share.cpu().numpy().astype(np.float64)
    grid = model.config.camera.grid
    out = []
    for row in share:
        shares, modalities = {"instruction": float(row[:n_text].sum())}, {"instruction": "text"}
        maps: dict[str, np.ndarray] = {}
        keypoints: dict[str, float] = {}
        lo = n_text
        for s, n in zip(model.streams, model.stream_tokens):
            part = row[lo : lo + n]
            lo += n
            shares[s.name] = float(part.sum())
            modalities[s.name] = s.modality
            if s.modality in IMAGE_MODALITIES:
                maps[s.name] = part[: grid * grid].reshape(grid, grid).astype(np.float32)
                keypoints[s.name] = float(part[grid * grid :].sum())
        out.append(Attribution(shares, modalities, maps, keypoints))
    return out
