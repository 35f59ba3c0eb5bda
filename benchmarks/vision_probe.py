"""Can the camera stem find the named block? A probe of the image encoder alone.

The policy can only reach the block that the instruction names if its camera features say
where that block is. This probe isolates that question from everything else in the policy:
the policy's own :class:`~mmrobot.policies.encoders.ImageEncoder` (and, for FiLM, its
:class:`~mmrobot.policies.encoders.InstructionEncoder`) plus a two-layer head are trained to
regress the named block's position in the base frame from the scene camera and the
instruction only, on the episodes of a demonstration dataset (``mmrobot collect``), and the
error is measured on episodes held out from that training. No proprioception, no
transformer, no actions.

Each variant trains from the same seed on the same batches; the table gives the validation
RMS error per axis in centimetres (the spread of the target itself is the row "predict the
mean") and per task the x-y RMS error over all steps and at the episodes' first steps
(where every block is where the scene put it, so only the instruction says which is meant). Two sets of variants (``--set``):

- ``stem``: the two-layer stem (mmrobot 0.2) without and with FiLM conditioning on the
  instruction, the keypoint softmax at temperature 1 and 10, and the three-layer stem;
- ``language``: the default three-layer stem with FiLM, its condition the mean of the
  instruction tokens after 0, 1 or 2 self-attention blocks (``language.layers``). A stack
  instruction names two blocks ("stack the red cube on the yellow one"); tokens that see only
  their neighbours cannot say which of the two is moved;
- ``swap``: as ``language`` (layers 0 and 1), and half of the stack samples have the two
  blocks' roles swapped in the instruction, with the base block's position as the target: the
  same image, two instructions, two answers, so only word order tells them apart;
- ``default``: the policy's stem alone (compare datasets, e.g. camera resolutions: the
  encoder takes the dataset's image size);
- ``far``: the default stem trained on every step or only on steps whose gripper is 8 cm or
  more from the named block (x-y): near it, the scene offers "the block by the gripper" as
  a cue that does not need the words;
- ``pool``: the default stem with FiLM, its condition the token mean or 4 learned-query
  attention pools over the instruction tokens, which could pick out the words that name the
  block (measured on v11's demonstrations: no better than the mean, docs/policy-trials.md);
- ``pixel``: the default stem with FiLM on the token mean, without and with a per-pixel FiLM
  from cross-attention of each pixel to the instruction tokens (``ImageEncoder``'s
  ``pixel_film``): a pixel of the named block can read its colour word together with its
  place in the sentence (which of a stack's two blocks is moved);
- ``color``: the default stem without and with the training's ``color_swap`` augmentation on
  half the samples (:mod:`mmrobot.train.color_swap`: the blocks recoloured by a random
  permutation of the colours, the instruction's colour words permuted alike; the target
  stays). Every layout then comes with other names for its blocks;
- ``map``: the per-pixel FiLM stem without and with a map loss (the policy config's
  ``training.camera_map``): the spatial softmax of the last stem layer's first channel is
  trained to peak where the named block is in the image (its base-frame position projected
  into the scene camera, :mod:`mmrobot.envs.projection`), so that channel's keypoint is the
  block's image position; a dense, per-pixel signal where the position head has three
  numbers;
- ``pixel_from``: per-pixel FiLM in every stem layer, from the second, or in the last only
  (``camera.pixel_film_from``): the first layer has 4x the pixels of the second, so most of
  the per-pixel cost is there; does the grounding need it?

Usage: python benchmarks/vision_probe.py --dataset DEMOS.h5
           [--set stem|language|default|far|pool|swap|pixel|color|map|pixel_from]
           [--steps 1500] [--lr 1e-3] [--json PATH] [--quick] [--only K ...]

Each variant trains from the same seed on the same batches, so a rerun of one variant
(``--only 2``: the set's second) reproduces its row of an earlier run of the whole set.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, use_allowed_cores, write_trained_probe_json  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Variant:
    """One probe: the stem, its conditioning and what it trains on."""

    label: str
    stem: tuple[int, ...] = (16, 32, 64)  # channels per layer
    film: bool = True  # FiLM conditioning on the instruction
    temperature: float = 10.0  # keypoint softmax temperature
    layers: int = 0  # instruction self-attention blocks before the condition
    swap: bool = False  # half the stack samples with the blocks' roles swapped
    color_swap: bool = False  # half the samples recoloured and renamed
    pool: int = 0  # learned-query attention pools as the condition (0: the token mean)
    far_cm: float = 0.0  # steps with the gripper nearer (x-y) to the block than this ...
    near_weight: float = 0.0  # ... weigh this much (0: never drawn)
    pixel_film: bool = False  # per-pixel FiLM: pixels attend to the instruction tokens
    camera_map: float = 0.0  # weight of the named block's map loss (0: none)
    pixel_film_from: int = 0  # the first stem layer with per-pixel FiLM


VARIANTS = {
    "stem": [
        Variant("2-layer stem, keypoint temperature 10", (16, 32), film=False),
        Variant("2-layer stem + FiLM, keypoint temperature 1", (16, 32), temperature=1.0),
        Variant("2-layer stem + FiLM, keypoint temperature 10", (16, 32)),
        Variant("3-layer stem + FiLM, keypoint temperature 10"),
    ],
    "language": [
        Variant("FiLM on the token mean (language.layers = 0)"),
        Variant("1 self-attention block first (layers = 1)", layers=1),
        Variant("2 self-attention blocks first (layers = 2)", layers=2),
    ],
    "default": [Variant("the policy's stem: 3 layers, FiLM on the token mean")],
    "far": [
        Variant("all steps (v11)"),
        Variant("only steps with the gripper 8 cm or more from the block", far_cm=8.0),
        Variant("steps nearer than 8 cm weigh 0.2 (v13)", far_cm=8.0, near_weight=0.2),
    ],
    "pool": [
        Variant("FiLM on the token mean (v11)"),
        Variant("FiLM on 4 learned-query attention pools", pool=4),
    ],
    "swap": [
        Variant("layers = 0, swapped stack instructions", swap=True),
        Variant("layers = 1, swapped stack instructions", layers=1, swap=True),
    ],
    "pixel": [
        Variant("FiLM on the token mean (v11)"),
        Variant("+ per-pixel FiLM from cross-attention to the tokens", pixel_film=True),
    ],
    "map": [
        Variant("per-pixel FiLM (v20)", pixel_film=True),
        Variant("+ the named block's map, weight 1", pixel_film=True, camera_map=1.0),
        Variant("+ the named block's map, weight 0.1", pixel_film=True, camera_map=0.1),
    ],
    "pixel_from": [
        Variant("per-pixel FiLM in every stem layer (v20)", pixel_film=True),
        Variant("per-pixel FiLM from the second layer", pixel_film=True, pixel_film_from=1),
        Variant("per-pixel FiLM in the last layer only", pixel_film=True, pixel_film_from=2),
    ],
    "color": [
        Variant("layers = 0 (v6)"),
        Variant("layers = 0, colours swapped in half the samples", color_swap=True),
    ],
}


class Samples(NamedTuple):
    """The probe's samples (every ``every``-th step of some episodes; see :func:`load`)."""

    images: Any  # (N, H, W, 3) uint8 scene camera
    ids: Any  # (N, L) instruction token ids
    masks: Any  # (N, L) their validity
    y: Any  # (N, 3) the named block's base-frame position, cm (the target)
    tasks: Any  # (N,) task names
    first: Any  # (N,) bool: the episode's first step
    swap_ids: Any  # the instruction with a stack's two blocks swapped (others unchanged)
    swap_masks: Any
    swap_y: Any  # its target: the base block's position (others unchanged)
    texts: list[str]  # the instructions
    dist: Any  # (N,) the gripper's x-y distance from the named block, cm
    px: Any  # (N, 2) the named block's image position, fractions of width and height


def load(path: str, episodes: range, projection, every: int = 3) -> Samples:
    """The :class:`Samples` of every ``every``-th step of ``episodes``."""
    import numpy as np
    import torch

    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.policies.tokenizers import ByteTokenizer

    ds, tok = DemoDataset(path), ByteTokenizer(64)
    from mmrobot.envs.instructions import make_instruction
    from mmrobot.envs.tasks import TaskSpec

    ims, ids, masks, ys, tasks, first, texts, dist = [], [], [], [], [], [], [], []
    swap_ids, swap_masks, swap_ys = [], [], []
    rng = np.random.default_rng(0)
    for e in episodes:
        im = ds.stream(e, "scene_cam")[::every]
        ee = ds.stream(e, "ee_pose")[::every]
        ee = ee[:, -1] if ee.ndim == 3 else ee  # the newest sample of a history window
        rel = ds.aux(e)["block_rel"][::every]
        info = ds.info(e)
        i, m = tok.encode(info.instruction)
        ims.append(im)
        ys.append((rel + ee[:, :3]) * 100.0)  # block = (block - TCP) + TCP, in cm
        dist.append(np.linalg.norm(rel[:, :2], axis=1) * 100.0)
        ids += [i] * len(im)
        masks += [m] * len(im)
        texts += [info.instruction] * len(im)
        # a stack's roles swapped: "stack the blue cube on the red one" names the other block
        spec = TaskSpec.parse(info.task)
        if spec.task == "stack":
            p = dict(spec.params)
            p["color"], p["base_color"] = p["base_color"], p["color"]
            p["size"], p["base_size"] = p["base_size"], p["size"]
            si, sm = tok.encode(make_instruction(TaskSpec("stack", p), rng))
            swap_ys.append((ds.aux(e)["goal_rel"][::every] + ee[:, :3]) * 100.0)
        else:
            si, sm = i, m
            swap_ys.append(ys[-1])
        swap_ids += [si] * len(im)
        swap_masks += [sm] * len(im)
        tasks += [ds.info(e).task.split()[0]] * len(im)
        first += [True] + [False] * (len(im) - 1)
    return Samples(
        torch.from_numpy(np.concatenate(ims)),
        torch.from_numpy(np.stack(ids)),
        torch.from_numpy(np.stack(masks)),
        torch.from_numpy(np.concatenate(ys)).float(),
        np.array(tasks),
        np.array(first),
        torch.from_numpy(np.stack(swap_ids)),
        torch.from_numpy(np.stack(swap_masks)),
        torch.from_numpy(np.concatenate(swap_ys)).float(),
        texts,
        np.concatenate(dist),
        torch.from_numpy(projection.fractions(np.concatenate(ys) / 100.0)),
    )


def map_points_cm(projection, logits, z_cm):
    """Where maps (N, fh, fw) of logits put the block: each map's expected cell (its
    spatial softmax, as the keypoint token reads it) as an image point, on the plane at the
    block's true height ``z_cm`` (N,): (N, 3) base-frame positions in cm."""
    import numpy as np
    import torch

    n, fh, fw = logits.shape
    prob = torch.softmax(logits.reshape(n, -1).double(), -1).reshape(n, fh, fw)
    rows, cols = torch.meshgrid(torch.arange(float(fh)), torch.arange(float(fw)), indexing="ij")
    frac = np.column_stack(
        [
            ((prob * cols).sum((1, 2)).numpy() + 0.5) / fw,
            ((prob * rows).sum((1, 2)).numpy() + 0.5) / fh,
        ]
    )
    uv = frac * np.array([projection.width, projection.height])
    return torch.from_numpy(projection.on_plane(uv, z_cm.numpy() / 100.0) * 100.0).float()


def probe(train, val, v: Variant, steps: int, lr: float, seed: int = 0):
    """(N, 3) validation predictions (cm) after ``steps`` steps of batch 32, and with
    ``camera_map`` the validation samples' maps (N, fh, fw) of logits (else None)."""
    import numpy as np
    import torch
    from torch import nn

    from mmrobot.policies.encoders import ImageEncoder, InstructionEncoder
    from mmrobot.policies.model import Block
    from mmrobot.train.color_swap import ColorSwap
    from mmrobot.train.step import map_loss

    torch.manual_seed(seed)
    width = 128

    class InstructionPool(nn.Module):
        """Instruction tokens (B, T, width) -> (B, width): ``pool`` learned queries attend over
        the valid tokens, their pooled values projected back to ``width`` (a mean weighs the
        words that name the block like every other word)."""

        def __init__(self) -> None:
            super().__init__()
            self.query = nn.Parameter(torch.randn(v.pool, width) * width**-0.5)
            self.key = nn.Linear(width, width, bias=False)
            self.out = nn.Linear(v.pool * width, width)

        def forward(self, tokens, valid):
            scores = torch.einsum("btw,qw->bqt", self.key(tokens), self.query)
            scores = scores.masked_fill(~valid[:, None, :], -1e9)
            pooled = torch.einsum("bqt,btw->bqw", scores.softmax(-1), tokens)
            return self.out(pooled.flatten(1))

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text = InstructionEncoder(259, 64, 4, width)
            self.blocks = nn.ModuleList(Block(width, 4, 4.0, 0.0) for _ in range(v.layers))
            self.image = ImageEncoder(
                tuple(train.images.shape[1:]),
                v.stem,
                grid=4,
                width=width,
                film=v.film,
                keypoint_temperature=v.temperature,
                pixel_film=v.pixel_film,
                pixel_film_from=v.pixel_film_from,
            )
            self.head = nn.Sequential(nn.Linear(2 * width, width), nn.GELU(), nn.Linear(width, 3))
            self.pool = InstructionPool() if v.pool else None

        def forward(self, images, ids, mask):
            text, valid = self.text(ids, mask)
            w = valid.float().unsqueeze(-1)
            if len(self.blocks):  # as FusionPolicyModel: padding tokens are masked keys
                bias = torch.where(valid, 0.0, -1e9)[:, None, None, :]
                for blk in self.blocks:
                    text, _ = blk(text, bias.expand(-1, 1, text.shape[1], -1))
                text = text * w
            cond = self.pool(text, valid) if self.pool else (text * w).sum(1) / w.sum(1)
            words = (text, valid) if v.pixel_film else None
            if not v.camera_map:
                x = self.image(images, cond, words)
                return self.head(torch.cat([x.mean(1), x[:, -1]], dim=-1)), None
            x, maps = self.image(images, cond, words, maps=1)
            return self.head(torch.cat([x.mean(1), x[:, -1]], dim=-1)), maps[:, 0]

    model = Probe()
    opt = torch.optim.AdamW(model.parameters(), lr)
    mu, sd = train.y.mean(0), train.y.std(0)
    gen = torch.Generator().manual_seed(seed)
    swap_gen = torch.Generator().manual_seed(seed + 1)  # the batches stay those of the others
    recolor = ColorSwap(0.5, 64) if v.color_swap else None
    color_rng = np.random.default_rng(seed + 2)
    # far_cm: steps whose gripper is nearer (x-y) to the named block than that, where "the
    # block by the gripper" is a cue that does not need the words, are never drawn
    # (near_weight 0) or weigh near_weight in the loss (as the trainer's camera_near_weight)
    far = torch.from_numpy(train.dist >= v.far_cm)
    usable = torch.arange(len(far)) if v.near_weight else torch.from_numpy(np.flatnonzero(far))
    weight = torch.where(far, 1.0, v.near_weight)
    for _ in range(steps):
        idx = usable[torch.randint(0, len(usable), (32,), generator=gen)]
        images, ids, mask, y = train.images[idx], train.ids[idx], train.masks[idx], train.y[idx]
        if recolor is not None:  # half the samples recoloured and renamed; same target
            batch = {"im": images.numpy(), "ids": ids.numpy(), "mask": mask.numpy()}
            texts = [train.texts[i] for i in idx.tolist()]
            recolor.apply(batch, ["im"], texts, "ids", "mask", color_rng)
            images, ids, mask = (torch.from_numpy(batch[k]) for k in ("im", "ids", "mask"))
        if v.swap:  # half the samples with the roles swapped (other tasks: no change)
            sw = (torch.rand(32, generator=swap_gen) < 0.5)[:, None]
            ids = torch.where(sw, train.swap_ids[idx], ids)
            mask = torch.where(sw, train.swap_masks[idx], mask)
            y = torch.where(sw, train.swap_y[idx], y)
        pred, maps = model(images, ids, mask)
        w = weight[idx]
        loss = (((pred - (y - mu) / sd) ** 2).mean(1) * w).sum() / w.sum().clamp(min=1e-6)
        if maps is not None:  # the named block's map (the map variants only)
            loss = loss + v.camera_map * map_loss(maps, train.px[idx], torch.ones(32, dtype=bool))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        out = [
            model(val.images[i : i + 256], val.ids[i : i + 256], val.masks[i : i + 256])
            for i in range(0, len(val.images), 256)
        ]
    pred = torch.cat([p for p, _ in out])
    maps = torch.cat([m for _, m in out]) if v.camera_map else None
    return pred * sd + mu, maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="demonstrations (mmrobot collect)")
    parser.add_argument("--set", choices=sorted(VARIANTS), default="stem", help="variants")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--quick", action="store_true", help="50 steps (a smoke run)")
    parser.add_argument("--json", metavar="PATH")
    parser.add_argument(
        "--only", type=int, nargs="+", metavar="K", help="run only the set's K-th variants (from 1)"
    )
    args = parser.parse_args()
    variants = VARIANTS[args.set]
    if args.only:
        bad = [k for k in args.only if not 1 <= k <= len(variants)]
        if bad:
            parser.error(f"--only {bad}: the set {args.set!r} has variants 1-{len(variants)}")
        variants = [variants[k - 1] for k in args.only]

    from mmrobot.envs.dataset import DemoDataset

    use_allowed_cores()
    n = len(DemoDataset(args.dataset))
    n_val = max(1, int(n * args.val_fraction))
    from mmrobot.envs.scene import Scene

    scene = Scene()
    cam = next(s for s in DemoDataset(args.dataset).specs if s.name == "scene_cam")
    size = cam.shape[:2]
    projection = scene.camera_projection("scene_cam", *size)
    scene.close()
    train = load(args.dataset, range(0, n - n_val), projection)
    val = load(args.dataset, range(n - n_val, n), projection)
    steps = 50 if args.quick else args.steps
    load_before = os.getloadavg()[0]
    import numpy as np

    tasks = sorted(set(val.tasks))

    def xy_rms(err, rows):
        return float(np.sqrt((err[rows, :2] ** 2).sum(1).mean()))

    def row(label, pred, sec):
        err = (pred - val.y).numpy()
        per_axis = np.sqrt((err**2).mean(0)).tolist()
        per_task = {t: xy_rms(err, val.tasks == t) for t in tasks}
        # at the first step every block is where the scene put it: the instruction alone says
        # which one is meant
        at_start = {t: xy_rms(err, (val.tasks == t) & val.first) for t in tasks}
        cells = [
            label,
            *(f"{v:.2f}" for v in per_axis),
            *(f"{per_task[t]:.2f} / {at_start[t]:.2f}" for t in tasks),
        ]
        doc = {"rms_cm": per_axis, "xy_rms_cm_per_task": per_task, "xy_rms_cm_first_step": at_start}
        return [*cells, sec], doc

    mean_row, mean_doc = row("predict the mean", val.y.mean(0).expand_as(val.y), "-")
    rows, results = [mean_row], [{"variant": "predict the mean", **mean_doc}]
    for v in variants:
        t0 = time.perf_counter()
        pred, maps = probe(train, val, v, steps, args.lr)
        sec = time.perf_counter() - t0
        cells, doc = row(v.label, pred, f"{sec:.0f}")
        rows.append(cells)
        if maps is not None:  # the map itself, read as the keypoint reads it
            map_cells, map_doc = row(
                "  its map, on the block's height",
                map_points_cm(projection, maps, val.y[:, 2]),
                "-",
            )
            rows.append(map_cells)
            doc["map"] = map_doc
        results.append(
            {
                "variant": v.label,
                "stem_channels": list(v.stem),
                "film": v.film,
                "keypoint_temperature": v.temperature,
                "language_layers": v.layers,
                "swapped_stack_instructions": v.swap,
                "color_swap": v.color_swap,
                "pool_queries": v.pool,
                "train_far_cm": v.far_cm,
                "near_weight": v.near_weight,
                "pixel_film": v.pixel_film,
                "camera_map": v.camera_map,
                "pixel_film_from": v.pixel_film_from,
                **doc,
                "seconds": sec,
            }
        )
    load_after = os.getloadavg()[0]
    print_table(
        f"vision probe: {steps} steps, lr {args.lr:g}, {n - n_val} training / {n_val} held-out "
        f"episodes of {args.dataset}; load {load_before:.2f} -> {load_after:.2f}",
        ["variant", "x (cm)", "y (cm)", "z (cm)", *(f"{t} x-y / first" for t in tasks), "seconds"],
        rows,
    )
    write_trained_probe_json(
        args,
        "vision_probe",
        steps,
        (n - n_val, n_val),
        [load_before, load_after],
        results,
        set=args.set,
    )


if __name__ == "__main__":
    main()
