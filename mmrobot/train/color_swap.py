"""Colour-swap augmentation: the same scene with the blocks' colours permuted, and the
instruction's colour words permuted with them (``color_swap`` in the train config).

Why: a demonstration ties one layout to one named block. With a few hundred scenes per task
the network can learn the layout instead of the words (v6's camera heads find the block a
stack instruction names to 3 cm on their training scenes and to 10 cm on new ones,
docs/policy-trials.md). Recolouring the blocks and renaming them alike keeps every position, action
and privileged target right, and makes the words the only way to tell which block is meant.

The recolouring works on rendered pixels. The blocks are the only saturated surfaces of the
tabletop scene (saturation >= 0.85 where the table, bin and robot stay <= 0.39, measured on a
rendered frame), so a pixel with saturation above :data:`SATURATION_MIN` is a block pixel, and
the block colour whose hue is nearest is its colour. Its hue is turned to the new colour's and
its saturation and value are scaled by the two colours' ratio, which reproduces a render of the
scene with the blocks' ``rgba`` swapped (tested against one).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.envs import names

__all__ = [
    "SATURATION_MIN",
    "Palette",
    "block_palette",
    "recolor",
    "render_permuted",
    "swap_color_words",
    "ColorSwap",
]

#: a pixel this saturated (HSV) is a block's
SATURATION_MIN = 0.6
#: ... and at least this bright (hue is meaningless near black)
VALUE_MIN = 0.08
_SCENE_XML = Path(__file__).resolve().parents[2] / "envs" / "tabletop.xml"


class Palette:
    """The block colours' names and their HSV (hue in [0, 1)), in :data:`names.COLORS` order."""

    def __init__(self, colors: Sequence[str], rgb: np.ndarray) -> None:
        self.colors = tuple(colors)
        self.hsv = rgb_to_hsv(np.asarray(rgb, dtype=np.float64).reshape(-1, 3))
        if len(self.colors) != len(self.hsv):
            raise ValueError(f"{len(self.colors)} colour names for {len(self.hsv)} colours")


@functools.lru_cache(maxsize=2)
def block_palette(xml: str | Path = _SCENE_XML) -> Palette:
    """The block colours of the scene ``xml`` (its ``block_<colour>_small_geom`` rgba)."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(xml))
    rgb = []
    for c in names.COLORS:
        g = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, names.block_geom(c, "small"))
        if g < 0:
            raise ConfigError(f"{xml}: no geom {names.block_geom(c, 'small')!r}")
        rgb.append(model.geom_rgba[g, :3])
    return Palette(names.COLORS, np.array(rgb))


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (..., 3) HSV, hue in [0, 1)."""
    mx, mn = rgb.max(-1), rgb.min(-1)
    delta = mx - mn
    safe = np.where(delta > 0, delta, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(
        mx == r,
        ((g - b) / safe) % 6.0,
        np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = np.where(delta > 0, hue / 6.0, 0.0)
    sat = np.where(mx > 0, delta / np.where(mx > 0, mx, 1.0), 0.0)
    return np.stack([hue % 1.0, sat, mx], axis=-1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(..., 3) HSV (hue in [0, 1)) -> (..., 3) RGB in [0, 1]."""
    h, s, v = hsv[..., 0] * 6.0, hsv[..., 1], hsv[..., 2]
    k = (np.array([5.0, 3.0, 1.0]) + h[..., None]) % 6.0
    return v[..., None] - (v * s)[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def recolor(images: np.ndarray, perms: np.ndarray, palette: Palette | None = None) -> np.ndarray:
    """Images with every block's colour ``c`` replaced by colour ``perms[i, c]``.

    Args:
        images: (B, H, W, 3) uint8 renders of the tabletop scene.
        perms: (B, n_colors) int: per image, the new colour index of each palette colour.
        palette: the block colours (default: :func:`block_palette`).

    Returns:
        (B, H, W, 3) uint8, a new array; pixels that are not a block's are unchanged.
    """
    pal = palette or block_palette()
    perms = np.asarray(perms, dtype=np.int64)
    if images.ndim != 4 or images.shape[-1] != 3 or perms.shape != (len(images), len(pal.colors)):
        raise ValueError(
            f"recolor needs (B, H, W, 3) images and (B, {len(pal.colors)}) permutations, got "
            f"{images.shape} and {perms.shape}"
        )
    out = images.copy()
    # the block mask in integers (a float copy of every pixel costs more than the rest)
    # (elementwise over the channels: numpy reduces a 3-long last axis slowly)
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    mx = np.maximum(np.maximum(r, g), b).astype(np.int16)
    mn = np.minimum(np.minimum(r, g), b).astype(np.int16)
    block = (mx >= VALUE_MIN * 255.0) & (mx - mn >= SATURATION_MIN * mx)
    b_idx, y_idx, x_idx = np.nonzero(block)
    if not len(b_idx):
        return out
    hsv = rgb_to_hsv(images[b_idx, y_idx, x_idx].astype(np.float64) / 255.0)
    dist = np.abs(hsv[:, :1] - pal.hsv[None, :, 0])
    src = np.minimum(dist, 1.0 - dist).argmin(axis=1)  # nearest hue, on the circle
    dst = perms[b_idx, src]
    hsv[:, 0] = (hsv[:, 0] + pal.hsv[dst, 0] - pal.hsv[src, 0]) % 1.0
    hsv[:, 1:] = np.clip(hsv[:, 1:] * pal.hsv[dst, 1:] / pal.hsv[src, 1:], 0.0, 1.0)
    out[b_idx, y_idx, x_idx] = np.round(hsv_to_rgb(hsv) * 255.0).astype(np.uint8)
    return out


def render_permuted(scene: Any, cameras: Sequence[Any], perm: Sequence[int]) -> np.ndarray:
    """What the ``cameras`` see of ``scene`` with the blocks' colours permuted in the model
    itself (block colour ``c`` drawn as colour ``perm[c]``, every size alike): the real render
    that :func:`recolor` imitates. The model's colours are restored afterwards.

    Returns: (n_cameras, H, W, 3) uint8.
    """
    import mujoco

    def geoms(color: str) -> list[int]:
        return [
            mujoco.mj_name2id(scene.model, mujoco.mjtObj.mjOBJ_GEOM, names.block_geom(color, s))
            for s in names.SIZES
        ]

    nominal = scene.model.geom_rgba.copy()
    try:
        for i, color in enumerate(names.COLORS):
            for g, g_new in zip(geoms(color), geoms(names.COLORS[perm[i]])):
                scene.model.geom_rgba[g, :3] = nominal[g_new, :3]
        return np.stack([c.measure(scene) for c in cameras])
    finally:
        scene.model.geom_rgba[:] = nominal


def swap_color_words(text: str, mapping: dict[str, str]) -> str:
    """``text`` with every whole-word colour name ``a`` replaced by ``mapping[a]``
    (simultaneously, so a swap red <-> green is one pass)."""
    if not mapping:
        return text
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b")
    return pattern.sub(lambda m: mapping[m.group(1)], text)


class ColorSwap:
    """Applies a random colour permutation to a share ``prob`` of a batch's samples.

    Only samples whose instruction names its blocks with the palette's own colour words
    (the training phrasings) are eligible; the others stay as they are.
    """

    def __init__(self, prob: float, max_len: int, palette: Palette | None = None) -> None:
        from mmrobot.policies.tokenizers import ByteTokenizer

        if not 0.0 <= prob <= 1.0:
            raise ConfigError(f"color_swap must be in [0, 1], got {prob}")
        self.prob = prob
        self.palette = palette or block_palette()
        self.tokenizer = ByteTokenizer(max_len)
        self._word = re.compile(r"\b(" + "|".join(self.palette.colors) + r")\b")

    def apply(
        self,
        batch: dict[str, np.ndarray],
        image_keys: Sequence[str],
        instructions: Sequence[str],
        ids_key: str,
        mask_key: str,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Swap colours in place in ``batch`` (its images under ``image_keys``, its
        instruction tokens under ``ids_key``/``mask_key``); ``instructions`` are the batch's
        texts. Returns the (B,) bool mask of the swapped samples."""
        n = len(instructions)
        chosen = (rng.random(n) < self.prob) & np.array(
            [bool(self._word.search(t)) for t in instructions], dtype=bool
        )
        rows = np.flatnonzero(chosen)
        if not len(rows):
            return chosen
        k = len(self.palette.colors)
        perms = np.stack([rng.permutation(k) for _ in rows])
        for key in image_keys:
            batch[key][rows] = recolor(batch[key][rows], perms, self.palette)
        for r, perm in zip(rows, perms):
            mapping = {self.palette.colors[c]: self.palette.colors[perm[c]] for c in range(k)}
            text = swap_color_words(instructions[r], mapping)
            batch[ids_key][r], batch[mask_key][r] = self.tokenizer.encode(text)
        return chosen
