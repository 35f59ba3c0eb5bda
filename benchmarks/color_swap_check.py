"""How close `color_swap`'s recolouring comes to a real render, and what it costs.

For each scene (fresh `stack` scenes: four blocks on the table), the cameras render it once
as it is and once with the blocks' colours permuted in the MuJoCo model itself
(`render_permuted`). `recolor` is then applied to the first render with the same permutation.
Over the pixels the real swap changed, the table gives the mean absolute difference (levels of
255, per channel) of the recoloured frame from the real swapped render, against that of the
unchanged frame: the augmentation is right where the first is a small fraction of the second.
Pixels the swap did not change must come out untouched (counted).

The cost: median time of `recolor` on a batch of frames of the training size (the share of
a batch `color_swap` picks, times the cameras).

    python benchmarks/color_swap_check.py [--scenes 6] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time_per_call, print_table, write_json  # noqa: E402


def check_scene(env: Any, seed: int) -> tuple[dict[str, float], np.ndarray]:
    """One fresh stack scene: the comparison's figures, and the cameras' frames as they are."""
    from mmrobot.envs import names
    from mmrobot.envs.sensors import CameraDriver
    from mmrobot.train.color_swap import recolor, render_permuted

    env.reset(seed=seed, options={"task": "stack"})
    cameras = [d for d in env.drivers if type(d) is CameraDriver]
    perm = np.random.default_rng(seed).permutation(len(names.COLORS))
    if np.array_equal(perm, np.arange(len(perm))):
        perm = np.roll(perm, 1)
    before = np.stack([c.measure(env.scene) for c in cameras])
    real = render_permuted(env.scene, cameras, perm)
    ours = recolor(before, np.tile(perm, (len(before), 1)))
    diff = np.abs(real.astype(int) - before.astype(int)).sum(-1)
    moved = diff > 30
    unchanged = diff == 0
    figures = {
        "seed": seed,
        "moved_px": int(moved.sum()),
        "recoloured_err": float(np.abs(ours.astype(int) - real.astype(int))[moved].mean()),
        "unchanged_err": float(np.abs(before.astype(int) - real.astype(int))[moved].mean()),
        "off_block_px_altered": int((ours[unchanged] != before[unchanged]).any(-1).sum()),
    }
    return figures, before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=6)
    parser.add_argument("--seed", type=int, default=40001, help="first scene's seed")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32, help="frames per timed recolor call")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    os.environ.setdefault("MUJOCO_GL", "egl")
    from mmrobot.envs.collect import _make_env
    from mmrobot.train.color_swap import block_palette, recolor

    env = _make_env(args.image_size, "train", False).unwrapped
    try:
        checked = [check_scene(env, args.seed + i) for i in range(args.scenes)]
    finally:
        env.close()
    scenes = [figures for figures, _ in checked]
    print_table(
        "recolour against a real render with the blocks' colours permuted (levels of 255)",
        ["seed", "pixels changed", "recoloured, mean error", "unchanged, mean error",
         "off-block pixels altered"],
        [[s["seed"], s["moved_px"], f"{s['recoloured_err']:.1f}", f"{s['unchanged_err']:.1f}",
          s["off_block_px_altered"]] for s in scenes],
    )  # fmt: skip
    # the timing batch: the scenes' own frames, repeated up to --batch
    rendered = np.concatenate([frames for _, frames in checked])
    frames = rendered[np.arange(args.batch) % len(rendered)]
    k = len(block_palette().colors)
    perms = np.stack([np.random.default_rng(i).permutation(k) for i in range(args.batch)])
    recolor(frames, perms)  # warm-up
    sec, runs = median_time_per_call(lambda: recolor(frames, perms), 5, args.repeats)
    load = os.getloadavg()[0]
    print(
        f"recolor: {sec * 1e3:.2f} ms per batch of {args.batch} frames "
        f"{args.image_size}x{args.image_size} (median of {args.repeats}; load {load:.2f})"
    )
    write_json(
        args.json,
        {
            "bench": "color_swap_check",
            "load_avg": load,
            "scenes": scenes,
            "recolor_ms_per_batch": sec * 1e3,
            "recolor_runs_s": runs,
            "batch_frames": args.batch,
            "image_size": args.image_size,
        },
    )


if __name__ == "__main__":
    main()
