"""Modality encoders (torch): instructions, images, lidar scans and clouds, vectors, ages.

Every encoder maps its stream's batch array to ``(B, T, width)`` tokens with static ``T``,
using only ops that trace and export to ONNX (no Python branches on tensor values).

* :class:`InstructionEncoder`: UTF-8 byte embeddings, then a strided 1-D convolution that
  merges ``stride`` bytes into one token (64 bytes -> 16 tokens by default): vocabulary-free,
  robust to unseen words, and 4x fewer tokens than one per byte.
* :class:`ScanEncoder`: a planar lidar scan is an ordered 1-D signal (one ray per angle), so
  a 1-D convolution over the angular profile (circular padding: the scan wraps around) and
  one token per angular sector is both cheaper and a better prior than unordered grouping.
* :class:`PointGroupEncoder`: for 3-D clouds (and depth), Point-BERT grouping (Yu et al.,
  CVPR 2022, section 3.1): farthest-point sampling picks group centres, k nearest neighbours
  form each group, and a small PointNet (Qi et al., CVPR 2017) with max pooling turns each
  group into one token.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = [
    "InstructionEncoder",
    "ImageEncoder",
    "ScanEncoder",
    "PointGroupEncoder",
    "VectorEncoder",
    "AgeEmbedding",
    "farthest_point_sample",
    "knn_group",
]


def _conv_out(size: int) -> int:
    """Output size of a kernel-3, stride-2, padding-1 convolution."""
    return (size + 1) // 2


class ImageEncoder(nn.Module):
    """Convolutional stem + patchify into a ``grid x grid`` token map, with 2-D positions,
    plus (``keypoints``) one token of spatial-softmax keypoints.

    Input ``(B, H, W, C)`` or, with history, ``(B, T, H, W, C)`` uint8 (frames are stacked on
    channels); output ``(B, grid * grid [+ 1], width)``. Shared by all cameras.

    Two additions make the features say *where* things are, which a 4 x 4 patch grid alone
    says only to a patch (about 20 cm of table per patch at 96 x 96): coordinate channels
    (x and y in [-1, 1], appended to the image; Liu et al., "CoordConv", NeurIPS 2018), and
    a spatial softmax over every stem channel whose expected (x, y) positions form one more
    token (Levine et al., "End-to-end training of deep visuomotor policies", JMLR 2016): a
    channel that fires on "red cube" gives the red cube's image position to sub-pixel
    precision. ``keypoint_temperature`` sharpens that softmax.

    With ``film``, the instruction conditions the stem (FiLM: Perez et al., AAAI 2018; as in
    RT-1, Brohan et al., 2022): after each convolution, channel ``c`` becomes
    ``x * (1 + gamma_c) + beta_c`` with ``gamma, beta`` linear in the pooled instruction
    embedding. A channel can then fire on "the large yellow block" rather than on every
    block, and its spatial-softmax keypoint is that block's image position: the grounding of
    words to pixels happens where the pixels are, not only later in attention. The FiLM
    layers start at zero (the identity), so training begins from the unconditioned stem.

    One FiLM vector conditions every pixel alike: a stack instruction names two blocks, and
    the token mean says which colours are named but hardly which one is moved. With
    ``pixel_film``, each stem layer from ``pixel_film_from`` on also gets a per-pixel FiLM:
    every pixel's features query the instruction tokens (cross-attention, as in
    Perceiver-style conditioning; Jaegle et al., ICML 2021) and take their own (gamma, beta)
    from the tokens they attend to, so a red pixel can read the word "red" together with its
    place in the sentence. Zero-initialised, like FiLM, so training starts from the
    unconditioned stem.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        stem_channels: tuple[int, ...],
        grid: int,
        width: int,
        keypoints: bool = True,
        film: bool = False,
        keypoint_temperature: float = 1.0,
        pixel_film: bool = False,
        pixel_film_from: int = 0,
    ) -> None:
        super().__init__()
        if len(obs_shape) == 4:
            history, h, w, c = obs_shape
        else:
            (h, w, c), history = obs_shape, 1
        in_ch = c * history + 2  # + x, y coordinate channels
        layers: list[nn.Module] = []
        fh, fw = h, w
        for out_ch in stem_channels:
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), nn.GELU()]
            in_ch, fh, fw = out_ch, _conv_out(fh), _conv_out(fw)
        if fh % grid or fw % grid:
            from mmrobot.core.errors import ConfigError

            raise ConfigError(
                f"camera shape {obs_shape}: the {len(stem_channels)}-layer stem gives a {fh}x{fw} "
                f"feature map, not divisible by camera.grid {grid}; change camera.grid or "
                "camera.stem_channels (each stem layer halves the size, rounding up)"
            )
        self.stem = nn.Sequential(*layers)
        self.film = nn.ModuleList(nn.Linear(width, 2 * c) for c in stem_channels) if film else None
        if self.film is not None:
            for lin in self.film:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.pixel_film = (  # for the stem layers from pixel_film_from on
            nn.ModuleList(_PixelFiLM(c, width) for c in stem_channels[pixel_film_from:])
            if pixel_film
            else None
        )
        self.pixel_film_from = pixel_film_from
        # Patchify as reshape + linear (the same map as a kernel = stride convolution; the
        # convolution took a slower kernel on the CPU).
        self.grid, self.patch = grid, (fh // grid, fw // grid)
        self.patchify = nn.Linear(in_ch * (fh // grid) * (fw // grid), width)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
        self.register_buffer("coords", torch.stack([xs, ys]).unsqueeze(0), persistent=False)
        fy, fx = torch.meshgrid(torch.linspace(-1, 1, fh), torch.linspace(-1, 1, fw), indexing="ij")
        self.register_buffer(
            "feature_coords", torch.stack([fx.flatten(), fy.flatten()], -1), persistent=False
        )
        self.keypoint_proj = nn.Linear(2 * in_ch, width) if keypoints else None
        self.keypoint_temperature = keypoint_temperature
        self.pos = nn.Parameter(torch.randn(grid * grid + int(keypoints), width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.n_tokens = grid * grid + int(keypoints)

    def forward(
        self,
        images: torch.Tensor,
        condition: torch.Tensor | None = None,
        text: tuple[torch.Tensor, torch.Tensor] | None = None,
        maps: int = 0,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``images`` uint8 as in the class docstring; ``condition`` (B, width), the pooled
        instruction, is required with ``film``; ``text``, the instruction tokens (B, T, width)
        and their validity (B, T), with ``pixel_film``.

        With ``maps`` > 0 (training: the policy config's ``training.camera_map``), also the
        logits (B, maps, fh, fw) of the spatial softmax over the last stem layer's first
        ``maps`` channels, the same softmax whose expected positions are the keypoint token:
        a map trained to peak where a block is makes that channel's keypoint the block's
        image position."""
        x = images.to(torch.float32) * (1.0 / 255.0) - 0.5
        if x.dim() == 5:  # (B, T, H, W, C) -> (B, H, W, T*C)
            x = x.permute(0, 2, 3, 1, 4).flatten(3)
        x = x.permute(0, 3, 1, 2)
        x = torch.cat([x, self.coords.expand(x.shape[0], -1, -1, -1)], dim=1)
        if self.film is not None and condition is None:
            raise ValueError("an ImageEncoder with film needs the instruction condition")
        if self.pixel_film is not None and text is None:
            raise ValueError("an ImageEncoder with pixel_film needs the instruction tokens")
        for k in range(len(self.stem) // 2):  # stem layers: conv, GELU, conv, GELU, ...
            x = self.stem[2 * k](x)
            if self.film is not None:
                gamma, beta = self.film[k](condition)[:, :, None, None].chunk(2, dim=1)
                x = x * (1.0 + gamma) + beta
            if self.pixel_film is not None and k >= self.pixel_film_from:
                x = self.pixel_film[k - self.pixel_film_from](x, *text)
            x = self.stem[2 * k + 1](x)
        feat = x  # (B, C, fh, fw)
        b, c, g, (ph, pw) = feat.shape[0], feat.shape[1], self.grid, self.patch
        patches = feat.reshape(b, c, g, ph, g, pw).permute(0, 2, 4, 1, 3, 5)
        tokens = self.patchify(patches.reshape(b, g * g, c * ph * pw))  # (B, grid * grid, width)
        if self.keypoint_proj is not None:
            # (B, C, fh * fw); the stem's activations are small, so without the temperature
            # the softmax is nearly flat and every keypoint sits near the image centre
            attn = torch.softmax(feat.flatten(2) * self.keypoint_temperature, dim=-1)
            points = attn @ self.feature_coords  # (B, C, 2) expected (x, y) per channel
            kp = self.keypoint_proj(points.flatten(1)).unsqueeze(1)
            tokens = torch.cat([tokens, kp], dim=1)
        tokens = self.norm(tokens + self.pos)
        if maps:
            return tokens, feat[:, :maps] * self.keypoint_temperature
        return tokens


class _PixelFiLM(nn.Module):
    """Per-pixel FiLM from cross-attention: features (B, C, H, W) query instruction tokens
    (B, T, width); each pixel's (gamma, beta) is the attention-weighted mean of the tokens'
    values. The value map starts at zero, so the layer starts as the identity.

    The score of pixel features ``x`` and token key ``k`` is ``(W_q x + b_q) . k``; it is
    computed as ``x . (W_q^T k) + b_q . k``: the query map folded into the T keys instead of
    applied at every pixel (the same function and parameters, about half the work)."""

    def __init__(self, channels: int, width: int, dim: int = 32) -> None:
        super().__init__()
        self.query = nn.Conv2d(channels, dim, 1)  # W_q, b_q; only its parameters are used
        self.key = nn.Linear(width, dim)
        self.value = nn.Linear(width, 2 * channels)
        nn.init.zeros_(self.value.weight)
        nn.init.zeros_(self.value.bias)
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        k = self.key(tokens) * self.scale  # (B, T, dim)
        keys = k @ self.query.weight.flatten(1)  # (B, T, C): W_q^T k per token
        scores = torch.einsum("btc,bcp->btp", keys, x.flatten(2)) + (k @ self.query.bias)[..., None]
        scores = scores.masked_fill(~valid[:, :, None], -1e9)  # padding tokens: no weight
        film = torch.einsum("btc,btp->bcp", self.value(tokens), scores.softmax(1))
        gamma, beta = film.reshape(b, 2 * c, h, w).chunk(2, dim=1)
        return x * (1.0 + gamma) + beta


def farthest_point_sample(
    xyz: torch.Tensor, point_valid: torch.Tensor, n_groups: int
) -> torch.Tensor:
    """Indices (B, G) of ``n_groups`` farthest-point samples among the valid points.

    Starts at the first valid point; invalid points are never picked while a valid one
    remains unpicked. Written as a fixed-length loop of exportable ops.

    Args:
        xyz: (B, N, 3) float points.
        point_valid: (B, N) bool.
        n_groups: G.
    """
    # Invalid points sit at -1 so that min() keeps them there and argmax never prefers them.
    dist = torch.where(
        point_valid, torch.full_like(xyz[..., 0], 1e10), torch.full_like(xyz[..., 0], -1.0)
    )
    idx = torch.argmax(point_valid.to(torch.float32), dim=1)  # first valid (or 0 if none)
    chosen = [idx]
    for _ in range(n_groups - 1):
        last = torch.gather(xyz, 1, idx.view(-1, 1, 1).expand(-1, 1, xyz.shape[2]))  # (B, 1, 3)
        dist = torch.minimum(dist, ((xyz - last) ** 2).sum(-1))
        idx = torch.argmax(dist, dim=1)
        chosen.append(idx)
    return torch.stack(chosen, dim=1)


def knn_group(
    xyz: torch.Tensor, point_valid: torch.Tensor, centers: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, G, k) of each centre's k nearest valid points, and their validity (B, G, k)."""
    d2 = ((centers.unsqueeze(2) - xyz.unsqueeze(1)) ** 2).sum(-1)  # (B, G, N)
    d2 = torch.where(point_valid.unsqueeze(1), d2, torch.full_like(d2, 1e10))
    idx = torch.topk(d2, k, dim=2, largest=False).indices
    valid = torch.gather(point_valid.unsqueeze(1).expand(-1, centers.shape[1], -1), 2, idx)
    return idx, valid


class PointGroupEncoder(nn.Module):
    """Point cloud (B, N, C) -> (tokens (B, G, width), token_valid (B, G)).

    A point with all-zero coordinates is "no return" and ignored. Coordinates are normalized
    with the stream's mean/std (buffers ``mean``/``std``, shape (C,)).
    """

    def __init__(
        self, channels: int, groups: int, group_size: int, hidden: int, width: int
    ) -> None:
        super().__init__()
        self.groups, self.group_size = groups, group_size
        self.point_mlp = nn.Sequential(
            nn.Linear(channels, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, width),
        )
        self.center_mlp = nn.Sequential(nn.Linear(3, hidden), nn.GELU(), nn.Linear(hidden, width))
        self.norm = nn.LayerNorm(width)
        self.n_tokens = groups

    def forward(
        self, points: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        points = points.to(torch.float32)
        xyz = points[..., :3]
        point_valid = (xyz != 0).any(-1)
        center_idx = farthest_point_sample(xyz, point_valid, self.groups)  # (B, G)
        centers = torch.gather(xyz, 1, center_idx.unsqueeze(-1).expand(-1, -1, 3))  # (B, G, 3)
        center_valid = torch.gather(point_valid, 1, center_idx)
        nbr_idx, nbr_valid = knn_group(xyz, point_valid, centers, self.group_size)
        b, g, k = nbr_idx.shape
        nbr = torch.gather(points, 1, nbr_idx.reshape(b, g * k, 1).expand(-1, -1, points.shape[2]))
        nbr = nbr.reshape(b, g, k, points.shape[2])
        rel = (
            torch.cat([nbr[..., :3] - centers.unsqueeze(2), nbr[..., 3:] - mean[3:]], dim=-1) / std
        )
        feat = self.point_mlp(rel)  # (B, G, k, width)
        feat = torch.where(nbr_valid.unsqueeze(-1), feat, torch.full_like(feat, -1e4))
        pooled = feat.max(dim=2).values
        pooled = torch.where(nbr_valid.any(-1, keepdim=True), pooled, torch.zeros_like(pooled))
        tokens = pooled + self.center_mlp((centers - mean[:3]) / std[:3])
        return self.norm(tokens), center_valid


class ScanEncoder(nn.Module):
    """Planar lidar scan (B, N, C >= 3), rays in angular order -> (tokens (B, S, width), valid (B, S)).

    Per ray the features are the normalized point, its range and a return flag (a ray with
    all-zero coordinates is "no return" and contributes zeros). Two circular 1-D convolutions
    mix neighbouring rays; a kernel = stride = N / S convolution then turns each of the S
    angular sectors into one token. A sector without any return is an invalid token.
    """

    def __init__(self, n_rays: int, channels: int, sectors: int, hidden: int, width: int) -> None:
        super().__init__()
        if n_rays % sectors:
            from mmrobot.core.errors import ConfigError

            raise ConfigError(
                f"lidar scan of {n_rays} rays cannot be split into lidar.tokens = {sectors} "
                "equal sectors; choose a divisor of the ray count"
            )
        self.sectors, self.n_tokens = sectors, sectors
        self.sector_len = n_rays // sectors
        n_in = channels + 2  # point channels, range, return flag
        self.conv1 = nn.Conv1d(n_in, hidden, 5)
        self.conv2 = nn.Conv1d(hidden, hidden, 5)
        self.to_tokens = nn.Linear(hidden * self.sector_len, width)  # one sector -> one token
        self.act = nn.GELU()
        self.pos = nn.Parameter(torch.randn(sectors, width) * 0.02)
        self.norm = nn.LayerNorm(width)

    @staticmethod
    def _wrap(x: torch.Tensor, pad: int) -> torch.Tensor:
        """Circular padding along the ray axis (written out: it exports as Slice + Concat)."""
        return torch.cat([x[..., -pad:], x, x[..., :pad]], dim=-1)

    def forward(
        self, points: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        points = points.to(torch.float32)
        ret = (points[..., :3] != 0).any(-1)  # (B, N)
        r = ret.to(torch.float32).unsqueeze(-1)
        rng = torch.linalg.vector_norm(points[..., :3], dim=-1, keepdim=True)
        feats = torch.cat(
            [(points - mean) / std * r, rng / torch.linalg.vector_norm(std[:3]) * r, r], dim=-1
        ).transpose(1, 2)  # (B, C + 2, N)
        x = self.act(self.conv1(self._wrap(feats, 2)))
        x = self.act(self.conv2(self._wrap(x, 2)))
        b, h = x.shape[0], x.shape[1]
        sectors = x.reshape(b, h, self.sectors, self.sector_len).transpose(1, 2)
        tok = self.to_tokens(sectors.reshape(b, self.sectors, h * self.sector_len))  # (B, S, width)
        valid = ret.reshape(ret.shape[0], self.sectors, self.sector_len).any(-1)
        return self.norm(tok + self.pos), valid


class InstructionEncoder(nn.Module):
    """Byte ids (B, L) and mask (B, L) -> (tokens (B, L / stride, width), valid (B, L / stride)).

    Bytes are embedded, padding is zeroed, then a kernel = stride convolution merges each run
    of ``stride`` bytes into one token and a kernel-3 convolution lets neighbouring tokens see
    across their boundary (a word split between two runs). A token is valid when its run holds
    at least one real byte; the outputs of invalid runs are zeroed before the second
    convolution, so padding never changes a valid token.
    """

    def __init__(self, vocab_size: int, max_len: int, stride: int, width: int) -> None:
        super().__init__()
        if max_len % stride:
            from mmrobot.core.errors import ConfigError

            raise ConfigError(
                f"language.max_len {max_len} is not a multiple of language.stride {stride}"
            )
        self.stride, self.n_tokens = stride, max_len // stride
        self.embedding = nn.Embedding(vocab_size, width)
        self.byte_position = nn.Parameter(torch.randn(stride, width) * 0.02)
        self.merge = nn.Linear(stride * width, width)  # `stride` bytes -> one token
        self.mix = nn.Conv1d(width, width, 3, padding=1)
        self.act = nn.GELU()
        self.position = nn.Parameter(torch.randn(self.n_tokens, width) * 0.02)
        self.norm = nn.LayerNorm(width)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, length = ids.shape
        m = mask.to(torch.float32).unsqueeze(-1)
        x = (self.embedding(ids) + self.byte_position.repeat(self.n_tokens, 1)) * m
        x = x.reshape(b, self.n_tokens, -1)  # (B, tokens, stride * width)
        valid = mask.to(torch.bool).reshape(b, self.n_tokens, self.stride).any(-1)
        x = self.act(self.merge(x)) * valid.to(torch.float32).unsqueeze(-1)
        x = x + self.act(self.mix(x.transpose(1, 2))).transpose(1, 2)
        return self.norm(x + self.position), valid


class VectorEncoder(nn.Module):
    """A (B, dim) value or (B, history, dim) window -> (B, tokens, width) through an MLP."""

    def __init__(self, obs_shape: tuple[int, ...], hidden: int, width: int, tokens: int) -> None:
        super().__init__()
        n_in = math.prod(obs_shape)
        self.tokens, self.width = tokens, width
        self.mlp = nn.Sequential(
            nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, tokens * width)
        )
        self.norm = nn.LayerNorm(width)
        self.n_tokens = tokens

    def forward(self, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        x = (x.to(torch.float32) - mean) / std
        out = self.mlp(x.flatten(1)).view(x.shape[0], self.tokens, self.width)
        return self.norm(out)


class AgeEmbedding(nn.Module):
    """Embedding of a sample's age relative to its stream's ``max_age_ns``.

    The age fraction ``a = age_ns / max_age_ns`` (clipped to [-1, 4]) is expanded into
    ``[a, sin(pi k a), cos(pi k a)]`` for k = 1..n_freq and projected to the model width.
    """

    def __init__(self, width: int, n_freq: int = 4) -> None:
        super().__init__()
        self.register_buffer(
            "freqs", math.pi * torch.arange(1, n_freq + 1, dtype=torch.float32), persistent=False
        )
        self.proj = nn.Linear(1 + 2 * n_freq, width)

    def forward(self, age_ns: torch.Tensor, max_age_ns: int) -> torch.Tensor:
        """age_ns (B,) int64 -> (B, width)."""
        # Integer permille of max_age first: exact, and safe when the graph runs in float16.
        # The shift makes the dividend non-negative, where floor and truncating division (ONNX
        # Div on integers) agree.
        m = int(max_age_ns)
        shifted = torch.clamp(age_ns, -m, 4 * m) + m
        permille = shifted * 1000 // m - 1000
        a = (permille.to(torch.float32) * 1e-3).unsqueeze(-1)
        ang = a * self.freqs
        return self.proj(torch.cat([a, torch.sin(ang), torch.cos(ang)], dim=-1))
