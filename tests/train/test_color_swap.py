"""Colour-swap augmentation: recoloured renders against real ones, and the words with them."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.envs import names
from mmrobot.train.color_swap import (
    ColorSwap,
    block_palette,
    hsv_to_rgb,
    recolor,
    render_permuted,
    rgb_to_hsv,
    swap_color_words,
)


def test_hsv_round_trip():
    rgb = np.random.default_rng(0).random((500, 3))
    assert np.allclose(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-9)
    assert np.allclose(rgb_to_hsv(np.array([0.0, 0.5, 0.0]))[:2], [1 / 3, 1.0])


def test_palette_is_read_from_the_scene():
    pal = block_palette()
    assert pal.colors == names.COLORS
    hue = dict(zip(pal.colors, pal.hsv[:, 0]))
    # red near 0, then yellow, green, blue going round the circle
    assert min(hue["red"], 1 - hue["red"]) < 0.02
    assert hue["yellow"] < hue["green"] < hue["blue"]


@pytest.mark.parametrize("seed", [40001, 40002, 40003])
def test_recolour_matches_a_render_with_the_colours_swapped(seed):
    """Recolouring a render of a scene gives (to a few levels of 255) what MuJoCo renders when
    the blocks' rgba are permuted, and leaves every other pixel exactly as it was."""
    from mmrobot.envs.collect import _make_env
    from mmrobot.envs.sensors import CameraDriver

    env = _make_env(96, "train", False).unwrapped
    try:
        env.reset(seed=seed, options={"task": "stack"})
        cameras = [d for d in env.drivers if type(d) is CameraDriver]
        assert cameras
        perm = np.random.default_rng(seed).permutation(len(names.COLORS))
        if np.array_equal(perm, np.arange(len(perm))):
            perm = np.roll(perm, 1)
        before = np.stack([c.measure(env.scene) for c in cameras])
        after = render_permuted(env.scene, cameras, perm)
        # the model's colours are back: a second render is the first
        assert np.array_equal(np.stack([c.measure(env.scene) for c in cameras]), before)
    finally:
        env.close()
    out = recolor(before, np.tile(perm, (len(before), 1)))
    diff = np.abs(after.astype(int) - before.astype(int)).sum(-1)
    moved = diff > 30  # the pixels the swap changed in the real render
    assert moved.sum() > 200
    err = np.abs(out.astype(int) - after.astype(int))[moved].mean()
    untouched = np.abs(before.astype(int) - after.astype(int))[moved].mean()
    assert err < 15 and untouched > 50, (err, untouched)
    # nothing else changed: off the blocks, the recoloured image is the original
    assert np.array_equal(out[diff == 0], before[diff == 0])


def test_color_words_swap_together_and_whole_words_only():
    mapping = {"red": "green", "green": "red", "blue": "blue", "yellow": "blue"}
    text = "stack the small red block on the green cube, not the redder yellow one"
    assert swap_color_words(text, mapping) == (
        "stack the small green block on the red cube, not the redder blue one"
    )
    assert swap_color_words("go left", mapping) == "go left"


def test_the_recoloured_block_is_the_one_the_new_words_name():
    """Patches of the four palette colours, and an instruction naming two of them: after the
    swap, the patch the instruction calls "X" has colour X."""
    from mmrobot.policies.tokenizers import ByteTokenizer

    pal = block_palette()
    rgb = hsv_to_rgb(pal.hsv) * 0.8  # as lit: darker than the rgba
    image = np.full((1, 8, 8, 3), 120, np.uint8)  # a grey table
    for i in range(len(pal.colors)):
        image[0, 2 * i : 2 * i + 2, :2] = np.round(rgb[i] * 255)
    text = "stack the small red block on the large blue cube"
    tok = ByteTokenizer(64)
    ids, mask = tok.encode(text)
    batch = {"cam": image.copy(), "ids": ids[None].copy(), "mask": mask[None].copy()}
    rng = np.random.default_rng(3)
    chosen = ColorSwap(1.0, 64).apply(batch, ["cam"], [text], "ids", "mask", rng)
    assert chosen.tolist() == [True]
    new_text = tok.decode(batch["ids"][0])
    words = new_text.split()
    moved, base = words[3], words[8]
    assert {moved, base} <= set(pal.colors) and moved != base
    for old, new in (("red", moved), ("blue", base)):
        patch = batch["cam"][0, 2 * pal.colors.index(old), 0].astype(float) / 255
        hue = rgb_to_hsv(patch)[0]
        dist = np.abs(pal.hsv[:, 0] - hue)
        assert pal.colors[int(np.minimum(dist, 1 - dist).argmin())] == new
    assert np.all(batch["cam"][0, :, 4:] == 120)  # the table is untouched


def test_held_out_words_and_prob_zero_leave_the_sample_alone():
    from mmrobot.policies.tokenizers import ByteTokenizer

    image = np.zeros((2, 4, 4, 3), np.uint8)
    image[:, 0, 0] = (220, 20, 20)  # a red pixel
    texts = ["pick up the tiny crimson box", "pick up the small red block"]
    ids, masks = zip(*(ByteTokenizer(64).encode(t) for t in texts))
    batch = {"cam": image.copy(), "ids": np.stack(ids), "mask": np.stack(masks)}
    rng = np.random.default_rng(0)
    chosen = ColorSwap(1.0, 64).apply(batch, ["cam"], texts, "ids", "mask", rng)
    assert chosen.tolist() == [False, True]
    assert np.array_equal(batch["cam"][0], image[0]) and np.array_equal(batch["ids"][0], ids[0])
    none = ColorSwap(0.0, 64).apply(batch, ["cam"], texts, "ids", "mask", rng)
    assert not none.any()
    with pytest.raises(ValueError, match="permutations"):
        recolor(image, np.zeros((2, 3), int))
