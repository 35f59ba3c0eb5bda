"""The fusion transformer (torch): modality tokens + instruction tokens -> action-token logits.

Sequence for one decision (mid fusion, the default; token counts of ``policies/default.toml``)::

    [instruction 16] [scene_cam 16] [wrist_cam 16] [lidar 8] [ft 1] [joints 1] ... [actions 8]

Every observation token carries a modality embedding, a stream embedding (for cameras: the
camera embedding) and an embedding of its sample's age. Observation and language tokens
attend to each other (never to action tokens); action tokens attend to every valid
observation token and to action tokens (all of them for parallel decoding, earlier ones for
autoregressive decoding). Invalid tokens are masked out as keys (an additive mask), so their
values cannot change the output.

There is one action position per chunk step; it predicts all ``dim`` action tokens of its
step through per-dimension bin heads (one linear layer to ``dim x bins`` logits). Parallel
decoding reads ``horizon`` learned queries in one pass. Autoregressive decoding feeds each
step the embedding of the previous step's tokens (the sum of one embedding per dimension), so
a chunk takes ``horizon`` passes with a key/value cache, not ``horizon x dim``.

``fusion = "early"`` replaces the observation tokens by a few tokens projected from the
concatenation of all modality features; ``fusion = "late"`` runs one branch per stream
(each sees the instruction and its own stream), reads each branch with its own head and
averages the logits of the valid branches.

Training-only auxiliary heads (``training.aux_weights``) predict privileged simulator state
from the fused action features; they are used by :meth:`FusionPolicyModel.aux_predictions`
only, never by :meth:`generate`, so they reach neither ``act()`` nor the ONNX graph.

The forward pass has static shapes except the batch, no Python control flow on tensor
values, and uses :func:`torch.nn.functional.scaled_dot_product_attention`, so it traces and
exports to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmrobot.core.types import MODALITIES
from mmrobot.policies.collate import INSTRUCTION_MASK, INSTRUCTION_TOKENS, input_names, stream_keys
from mmrobot.policies.config import AUX_TARGETS, IMAGE_MODALITIES, POINT_MODALITIES, PolicyConfig
from mmrobot.policies.encoders import (
    AgeEmbedding,
    ImageEncoder,
    InstructionEncoder,
    PointGroupEncoder,
    ScanEncoder,
    VectorEncoder,
)
from mmrobot.policies.tokenizers import ByteTokenizer

__all__ = ["Block", "FusionPolicyModel", "batch_to_torch"]

Batch = dict[str, torch.Tensor]
_TEXT, _ACTION = 0, 1  # rows of the modality embedding before the sensor modalities
# Additive attention bias of a masked key: exp(-1e4) is exactly 0 in float32, and the value
# stays finite in float16 exports (-inf would turn a fully masked row into NaN).
_MASKED = -1e4


def batch_to_torch(batch: dict, device: str | torch.device = "cpu") -> Batch:
    """Numpy arrays from :func:`~mmrobot.policies.collate` -> torch tensors on ``device``."""
    return {k: torch.as_tensor(v).to(device) for k, v in batch.items()}


class Block(nn.Module):
    """Pre-norm transformer block (attention + GELU MLP) with an optional key/value cache."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))
        # Residual dropout only: attention-weight dropout cost 12 % of a CPU training step
        # (a bernoulli_ over every (query, key) pair) for no measured gain.
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(
        self,
        x: torch.Tensor,
        bias: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """x (B, T, C); bias (B, 1, T, T_past + T) additive float mask; returns x and (k, v)."""
        b, t, c = x.shape
        q, k, v = (
            self.qkv(self.norm1(x))
            .reshape(b, t, 3, self.heads, c // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        x = x + self.drop(self.proj(a.transpose(1, 2).reshape(b, t, c)))
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, (k, v)


class FusionPolicyModel(nn.Module):
    """The policy network, built from a :class:`PolicyConfig` (its streams pick the encoders).

    Inputs are the batch dict of :func:`~mmrobot.policies.collate` as tensors; outputs are
    action-token logits ``(B, H, D, bins)``.
    """

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        mc, ac, lc = config.model, config.action, config.language
        w = mc.width
        self.width = w
        self.streams = config.ordered_streams
        self.input_names = input_names(config.streams)
        self.n_actions = ac.horizon  # one action position per chunk step
        self.autoregressive = mc.decoding == "autoregressive"
        self.tokenizer = ByteTokenizer.from_config(lc)

        # Encoders.
        self.instruction_encoder = InstructionEncoder(
            ByteTokenizer.vocab_size, lc.max_len, lc.stride, w
        )
        # Order-aware instruction tokens (language.layers): which block a word names depends
        # on where it stands ("stack the red cube on the yellow one").
        self.instruction_blocks = nn.ModuleList(
            Block(w, mc.heads, mc.mlp_ratio, mc.dropout) for _ in range(lc.layers)
        )
        cams = [s for s in self.streams if s.modality in IMAGE_MODALITIES]
        self.image_encoder = (
            ImageEncoder(
                cams[0].obs_shape,
                config.camera.stem_channels,
                config.camera.grid,
                w,
                config.camera.keypoints,
                config.camera.film,
                config.camera.keypoint_temperature,
                config.camera.pixel_film,
                config.camera.pixel_film_from,
            )
            if cams
            else None
        )
        self.lidar_encoders = nn.ModuleDict()
        self.vector_encoders = nn.ModuleDict()
        n_tokens: list[int] = []
        for s in self.streams:
            if s.modality in IMAGE_MODALITIES:
                n_tokens.append(self.image_encoder.n_tokens)  # type: ignore[union-attr]
                continue
            lid = config.lidar
            if s.modality in POINT_MODALITIES:
                enc: nn.Module = (
                    ScanEncoder(s.shape[0], s.shape[-1], lid.tokens, lid.hidden, w)
                    if lid.encoder == "scan"
                    else PointGroupEncoder(s.shape[-1], lid.groups, lid.group_size, lid.hidden, w)
                )
                self.lidar_encoders[s.name] = enc
            else:
                enc = VectorEncoder(s.obs_shape, config.vector.hidden, w, config.vector.tokens)
                self.vector_encoders[s.name] = enc
            n_tokens.append(enc.n_tokens)
            stats = config.normalization.get(s.name)
            c = s.shape[-1]
            mean = torch.tensor(stats.mean if stats else [0.0] * c, dtype=torch.float32)
            std = torch.tensor(stats.std if stats else [1.0] * c, dtype=torch.float32)
            # Not persistent: the statistics live in the config, the single source of truth.
            self.register_buffer(f"norm_mean_{s.name}", mean, persistent=False)
            self.register_buffer(f"norm_std_{s.name}", std, persistent=False)
        self.stream_tokens = n_tokens
        self.age_embedding = AgeEmbedding(w)
        self.modality_embedding = nn.Parameter(torch.randn(2 + len(MODALITIES), w) * 0.02)
        self.stream_embedding = nn.Parameter(torch.randn(len(self.streams), w) * 0.02)

        # Token layout and branches (late fusion: one branch per stream; text is shared).
        late = mc.fusion == "late"
        self.n_branches = len(self.streams) if late else 1
        text_branch = -1 if late else 0
        branch_obs = [text_branch] * self.instruction_encoder.n_tokens
        if mc.fusion == "early":
            n_feat = sum(n_tokens) * mc.early_dim + len(self.streams)
            self.early_down = nn.Linear(w, mc.early_dim)
            self.early_proj = nn.Linear(n_feat, mc.early_tokens * w)
            self.early_position = nn.Parameter(torch.randn(mc.early_tokens, w) * 0.02)
            self.early_norm = nn.LayerNorm(w)
            branch_obs += [0] * mc.early_tokens
        else:
            for i, n in enumerate(n_tokens):
                branch_obs += [i if late else 0] * n
        self.n_obs_tokens = len(branch_obs)
        m = self.n_branches
        branch_act = [b for _ in range(self.n_actions) for b in range(m)]
        pos_act = [p for p in range(self.n_actions) for _ in range(m)]
        bo, ba, pa = torch.tensor(branch_obs), torch.tensor(branch_act), torch.tensor(pos_act)
        obs_obs = (bo[:, None] == bo[None, :]) | (bo[None, :] == -1)
        obs_act = torch.zeros(len(bo), len(ba), dtype=torch.bool)
        act_obs = (ba[:, None] == bo[None, :]) | (bo[None, :] == -1)
        act_act = ba[:, None] == ba[None, :]
        if self.autoregressive:
            act_act = act_act & (pa[None, :] <= pa[:, None])
        allowed = torch.cat(
            [torch.cat([obs_obs, obs_act], dim=1), torch.cat([act_obs, act_act], dim=1)], dim=0
        )
        # The layout part of the additive attention mask (T, T); validity is added per batch.
        self.register_buffer(
            "layout_bias",
            torch.where(allowed, 0.0, _MASKED).to(torch.float32),
            persistent=False,
        )

        # Action positions.
        if self.autoregressive:
            self.action_position = nn.Parameter(torch.randn(self.n_actions, w) * 0.02)
            self.action_start = nn.Parameter(torch.randn(w) * 0.02)
            # One table for all dims: token t of dim d is row d * bins + t.
            self.action_token_embedding = nn.Embedding(ac.dim * ac.bins, w)
            self.register_buffer("dim_offsets", torch.arange(ac.dim) * ac.bins, persistent=False)
        else:
            self.action_query = nn.Parameter(torch.randn(self.n_actions, w) * 0.02)
        self.blocks = nn.ModuleList(
            Block(w, mc.heads, mc.mlp_ratio, mc.dropout) for _ in range(mc.depth)
        )
        self.final_norm = nn.LayerNorm(w)
        self.heads = nn.ModuleList(nn.Linear(w, ac.dim * ac.bins) for _ in range(m))
        # Training-only heads on the pooled action features (never used by generate()).
        aux_names = [n for n, wt in config.training.aux_weights.items() if wt > 0]
        self.aux_heads = nn.ModuleDict(
            {
                name: nn.Sequential(nn.Linear(w, w), nn.GELU(), nn.Linear(w, AUX_TARGETS[name][1]))
                for name in aux_names
            }
        )
        # With training.encoder_aux, camera heads: the position targets in the base frame
        # (and, with training.camera_yaw, the block's turn) from the cameras and the
        # instruction alone, before fusion (see forward()).
        self.camera_aux_heads = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Linear((1 + 2 * len(cams)) * w, w),
                    nn.GELU(),
                    nn.Linear(w, AUX_TARGETS[name][1]),
                )
                for name in (config.training.camera_heads if cams else [])
            }
        )
        # A position head predicts (output * 10 + offset) cm: the offset, the mean target of
        # the training data (set by the trainer), takes the base frame's large mean (the table
        # is about 45 cm in front of the base) off the head, as normalizing a target does.
        #: the camera heads that predict a base-frame position (cm), not an angle
        self.camera_position_heads = config.training.camera_position_heads if cams else []
        for name in self.camera_position_heads:
            self.register_buffer(f"camera_aux_offset_{name}", torch.zeros(AUX_TARGETS[name][1]))

    # ----------------------------------------------------------------------------- encoding
    def _modality_index(self, modality: str) -> int:
        return 2 + MODALITIES.index(modality)

    def encode(
        self, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Observation and instruction tokens.

        Returns:
            tokens: (B, T_obs, width).
            valid: (B, T_obs) bool, False for padding and invalid-stream tokens.
            stream_valid: (B, n_streams) bool, after modality dropout.
            summary: (B, (1 + 2 * cameras) * width), the camera encoder's outputs before
                fusion: the pooled instruction, then per camera the mean of its tokens and
                its last token (the keypoint token, with ``camera.keypoints``), zero when the
                camera is invalid (read by the camera auxiliary heads only).
            maps: in training with ``training.camera_map``, the map logits (B, maps, fh, fw)
                of the ``camera_map_stream`` camera (:meth:`ImageEncoder.forward`), zero
                (a flat map: no gradient) where that camera is invalid; otherwise None.
        """
        text, text_valid = self.instruction_encoder(
            batch[INSTRUCTION_TOKENS], batch[INSTRUCTION_MASK]
        )
        tv = text_valid.to(text.dtype).unsqueeze(-1)
        if len(self.instruction_blocks):
            n = text.shape[1]
            key = torch.where(text_valid, 0.0, _MASKED).to(text.dtype)
            bias = key[:, None, None, :].expand(-1, 1, n, -1)
            for blk in self.instruction_blocks:
                text, _ = blk(text, bias)
            text = text * tv
        text_pooled = (text * tv).sum(1) / tv.sum(1).clamp(min=1.0)  # FiLM condition (B, w)
        text = text + self.modality_embedding[_TEXT]
        drop = self.config.training.modality_dropout
        inputs = []  # (value, valid, age) of every stream, invalid ones zeroed
        for s in self.streams:
            k_val, k_valid, k_age = stream_keys(s.name)
            x, valid, age = batch[k_val], batch[k_valid].to(torch.bool), batch[k_age]
            p = drop.get(s.modality, 0.0)
            if self.training and p > 0:
                valid = valid & (torch.rand(valid.shape, device=valid.device) >= p)
            # Zero what is invalid, so that not even NaN in a masked stream reaches the output.
            x = torch.where(valid.reshape(-1, *([1] * (x.dim() - 1))), x, torch.zeros_like(x))
            age = torch.where(valid, age, torch.zeros_like(age))
            inputs.append((x, valid, age))
        # Every camera in one batch through the shared encoder (fewer, larger convolutions).
        cams = [i for i, s in enumerate(self.streams) if s.modality in IMAGE_MODALITIES]
        cam_tokens: dict[int, torch.Tensor] = {}
        maps = None
        n_maps = len(self.config.training.camera_maps) if self.training else 0
        if cams:
            b = inputs[cams[0]][0].shape[0]
            cond = text_pooled.repeat(len(cams), 1)
            words = (
                (text.repeat(len(cams), 1, 1), text_valid.repeat(len(cams), 1))
                if self.config.camera.pixel_film
                else None
            )
            out = self.image_encoder(  # type: ignore[misc]
                torch.cat([inputs[i][0] for i in cams]), cond, words, maps=n_maps
            )
            if n_maps:
                out, all_maps = out
                k = [self.streams[i].name for i in cams].index(
                    self.config.training.camera_map_stream
                )
                valid = inputs[cams[k]][1]
                maps = all_maps[k * b : (k + 1) * b] * valid.to(out.dtype)[:, None, None, None]
            cam_tokens = {i: out[k * b : (k + 1) * b] for k, i in enumerate(cams)}
        pieces, valids, stream_valid, summary = [], [], [], [text_pooled]
        for i, s in enumerate(self.streams):
            x, valid, age = inputs[i]
            if s.modality in IMAGE_MODALITIES:
                tok = cam_tokens[i]
                tok_valid = valid.unsqueeze(1).expand(-1, tok.shape[1])
            elif s.modality in POINT_MODALITIES:
                tok, part_valid = self.lidar_encoders[s.name](
                    x, getattr(self, f"norm_mean_{s.name}"), getattr(self, f"norm_std_{s.name}")
                )
                tok_valid = part_valid & valid.unsqueeze(1)
            else:
                tok = self.vector_encoders[s.name](
                    x, getattr(self, f"norm_mean_{s.name}"), getattr(self, f"norm_std_{s.name}")
                )
                tok_valid = valid.unsqueeze(1).expand(-1, tok.shape[1])
            emb = (
                self.modality_embedding[self._modality_index(s.modality)] + self.stream_embedding[i]
            )
            if self.camera_aux_heads and s.modality in IMAGE_MODALITIES:  # training-only
                on = valid.to(tok.dtype).unsqueeze(-1)
                summary += [tok.mean(1) * on, tok[:, -1] * on]
            tok = tok + emb + self.age_embedding(age, s.max_age_ns).unsqueeze(1)
            pieces.append(tok)
            valids.append(tok_valid)
            stream_valid.append(valid)
        sv = torch.stack(stream_valid, dim=1)
        if self.config.model.fusion == "early":
            feats = [
                torch.where(
                    v.unsqueeze(-1), self.early_down(t), torch.zeros((), dtype=t.dtype)
                ).flatten(1)
                for t, v in zip(pieces, valids)
            ]
            fused = self.early_proj(torch.cat([*feats, sv.to(text.dtype)], dim=1))
            fused = (
                fused.reshape(-1, self.config.model.early_tokens, self.width) + self.early_position
            )
            pieces, valids = (
                [self.early_norm(fused)],
                [torch.ones_like(fused[..., 0], dtype=torch.bool)],
            )
        tokens = torch.cat([text, *pieces], dim=1)
        valid = torch.cat([text_valid, *valids], dim=1)
        return tokens, valid, sv, torch.cat(summary, dim=1), maps

    def attention_bias(self, valid: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, T) additive mask over [observation tokens][action positions].

        The layout (who may attend to whom) plus a key bias that hides invalid tokens.
        """
        key = torch.where(valid, 0.0, _MASKED).to(self.layout_bias.dtype)  # (B, T_obs)
        key = torch.cat(
            [
                key,
                torch.zeros_like(key[:, :1]).expand(-1, self.layout_bias.shape[1] - key.shape[1]),
            ],
            dim=1,
        )
        return (self.layout_bias.unsqueeze(0) + key.unsqueeze(1)).unsqueeze(1)

    # ----------------------------------------------------------------------------- actions
    def _step_embedding(self, step_tokens: torch.Tensor) -> torch.Tensor:
        """(B, P, D) action tokens -> (B, P, width): the sum of one embedding per dimension."""
        return self.action_token_embedding(step_tokens + self.dim_offsets).sum(-2)

    def _action_inputs(self, batch_size: int, target_tokens: torch.Tensor | None) -> torch.Tensor:
        """(B, H * branches, width) inputs of the action positions."""
        act_emb = self.modality_embedding[_ACTION]
        if self.autoregressive:
            if target_tokens is None:
                raise ValueError(
                    "an autoregressive model's forward() needs target_tokens (teacher forcing); "
                    "use generate() to decode"
                )
            prev = self._step_embedding(target_tokens[:, :-1])  # (B, H - 1, width)
            start = self.action_start.expand(batch_size, 1, -1)
            x = torch.cat([start, prev], dim=1) + self.action_position + act_emb
        else:
            x = (self.action_query + act_emb).unsqueeze(0).expand(batch_size, -1, -1)
        return x.repeat_interleave(self.n_branches, dim=1) if self.n_branches > 1 else x

    def _logits(self, x: torch.Tensor, stream_valid: torch.Tensor) -> torch.Tensor:
        """Action-position outputs (B, P * branches, width) -> logits (B, P, D, bins)."""
        b = x.shape[0]
        ac = self.config.action
        x = self.final_norm(x).reshape(b, -1, self.n_branches, self.width)
        if self.n_branches == 1:
            return self.heads[0](x[:, :, 0]).reshape(b, -1, ac.dim, ac.bins)
        per = torch.stack(
            [head(x[:, :, i]) for i, head in enumerate(self.heads)], dim=2
        )  # (B, P, M, D * bins)
        any_valid = stream_valid.any(dim=1, keepdim=True)
        sv = stream_valid.to(per.dtype)  # float: ONNX Runtime has no boolean Where kernel
        wts = torch.where(any_valid, sv, torch.ones_like(sv))  # (B, M)
        per = torch.where(wts[:, None, :, None] > 0, per, torch.zeros((), dtype=per.dtype))
        out = (per * wts[:, None, :, None]).sum(2) / wts.sum(1)[:, None, None]
        return out.reshape(b, -1, ac.dim, ac.bins)

    def _run(
        self, batch: Batch, target_tokens: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Teacher-forced pass: (final action features (B, H * branches, width), logits,
        camera summary, camera maps: see :meth:`encode`)."""
        tokens, valid, sv, summary, maps = self.encode(batch)
        b = tokens.shape[0]
        x = torch.cat([tokens, self._action_inputs(b, target_tokens)], dim=1)
        bias = self.attention_bias(valid)
        for blk in self.blocks:
            x, _ = blk(x, bias)
        feats = x[:, self.n_obs_tokens :]
        return feats, self._logits(feats, sv), summary, maps

    def forward(
        self, batch: Batch, target_tokens: torch.Tensor | None = None, with_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Action-token logits (B, H, D, bins); autoregressive models need ``target_tokens``
        (B, H, D) for teacher forcing.

        With ``with_aux`` (training), also the auxiliary heads' predictions (name -> (B, size)).
        The heads read the mean of the final action-position features: whatever they must
        predict (where the named block is, whether it is held) has to be in the features the
        action heads see. With ``training.encoder_aux``, ``"camera/<name>"`` predicts each
        position target in the base frame (``<name> + tcp``) from :meth:`encode`'s summary:
        the cameras and the instruction only, before fusion. Measured, fusion alone never
        taught the stem to find the named block: the proprioceptive streams explain part of
        the relative position sooner, and the camera's gradient is what is left over. A
        camera fixed to the base sees the block's base-frame position without the arm, so
        this target can only be met by looking (docs/policy-trials.md). In training with
        ``training.camera_map``, ``"camera_map/<name>"`` is that target's map (B, fh, fw) of
        logits over the ``camera_map_stream`` image (:meth:`encode`).
        """
        feats, logits, summary, maps = self._run(batch, target_tokens)
        if not with_aux:
            return logits
        pooled = self.final_norm(feats).mean(1)
        aux = {name: head(pooled) for name, head in self.aux_heads.items()}
        aux.update(self.camera_aux(summary))
        if maps is not None:  # training with training.camera_map: (B, fh, fw) logits each
            for k, name in enumerate(self.config.training.camera_maps):
                aux[f"camera_map/{name}"] = maps[:, k]
        return logits, aux

    def camera_aux(self, summary: torch.Tensor) -> dict[str, torch.Tensor]:
        """The camera heads' predictions (``"camera/<name>"`` -> (B, size): positions in the
        base frame in cm, ``block_yaw`` as its target's unit vector) from :meth:`encode`'s
        ``summary``; empty without ``training.encoder_aux``."""
        out = {f"camera/{n}": head(summary) for n, head in self.camera_aux_heads.items()}
        for n in self.camera_position_heads:
            out[f"camera/{n}"] = out[f"camera/{n}"] * 10.0 + getattr(self, f"camera_aux_offset_{n}")
        return out

    def generate(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Greedy decoding: action tokens (B, H, D) int64 and their logits (B, H, D, bins).

        Parallel models decode in one pass; autoregressive ones one chunk step at a time
        (all dims of a step at once) with a key/value cache over the observation prefix and
        earlier steps.
        """
        if not self.autoregressive:
            logits = self.forward(batch)
            return logits.argmax(-1), logits
        tokens, valid, sv, _, _ = self.encode(batch)
        b, t_obs, m = tokens.shape[0], self.n_obs_tokens, self.n_branches
        bias = self.attention_bias(valid)
        x, cache = tokens, []
        for blk in self.blocks:
            x, kv = blk(x, bias[:, :, :t_obs, :t_obs])
            cache.append(kv)
        act_emb = self.modality_embedding[_ACTION]
        h_in = self.action_start.expand(b, -1)
        out_tokens, out_logits = [], []
        for p in range(self.n_actions):
            h = (h_in + self.action_position[p] + act_emb).unsqueeze(1).expand(-1, m, -1)
            lo, hi = t_obs + p * m, t_obs + (p + 1) * m
            for li, blk in enumerate(self.blocks):
                h, cache[li] = blk(h, bias[:, :, lo:hi, :hi], past=cache[li])
            logits = self._logits(h, sv)[:, 0]  # (B, D, bins)
            step = logits.argmax(-1)  # (B, D)
            out_tokens.append(step)
            out_logits.append(logits)
            h_in = self._step_embedding(step)
        return torch.stack(out_tokens, 1), torch.stack(out_logits, 1)

    def loss(self, batch: Batch, target_tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over the action tokens, and token accuracy (teacher forced)."""
        logits = self.forward(batch, target_tokens)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_tokens.reshape(-1))
        acc = (logits.argmax(-1) == target_tokens).to(torch.float32).mean()
        return loss, acc

    def num_parameters(self, deployed: bool = False) -> int:
        """Parameter count; ``deployed=True`` leaves out the training-only auxiliary heads."""
        heads = [*self.aux_heads.parameters(), *self.camera_aux_heads.parameters()]
        skip = {id(p) for p in heads} if deployed else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)
