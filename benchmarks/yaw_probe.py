"""Can the camera stem see how the named block is turned? A probe of the image encoder alone.

The grasping tasks need the tool turned to the block's faces, and the policies so far guess
the direction (docs/policy-trials.md, "the policy does not turn the tool"). Before a camera head
for the turn goes into the policy, this probe asks whether the policy's own
:class:`~mmrobot.policies.encoders.ImageEncoder` (with FiLM on the instruction, as in the
policy) can read it at all: the stem and a two-layer head are trained to regress the turn as
``(sin 4 phi, cos 4 phi)`` (the ``block_yaw`` target's form: a square looks the same every
90 degrees) from one or both cameras and the instruction, on the episodes of a demonstration
dataset that records ``block_yaw`` (``mmrobot collect``), and measured on episodes held out
from that training. No proprioception, no transformer, no actions.

Two targets:

- ``turn``: the dataset's ``block_yaw``, the turn from the tool to the block's faces. The
  wrist camera turns with the tool, so it sees this angle directly once the block is in view.
- ``block``: the block's own yaw, measured from the tool's home yaw (``turn`` plus the tool's
  yaw, read from the ``ee_pose`` stream). The scene camera is fixed to the base, so it sees
  this angle directly.

The table gives, per task, the median turn error (degrees; a guess is 22.5) and the share
whose direction (sign) is right (a guess: 50 %) over all held-out steps, at each episode's
first step (the block as the scene put it; the ``start`` expert turns in the next ticks)
and at its first step over the block (TCP within the ``over_block`` expert's turning radius,
x-y; that expert turns there).

Usage: python benchmarks/yaw_probe.py --dataset DEMOS.h5 [--steps 1500] [--lr 1e-3]
           [--variants scene:block wrist:turn both:turn] [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, use_allowed_cores, write_trained_probe_json  # noqa: E402
from grounding_probe import first_over_block, turn_errors  # noqa: E402

#: camera choice -> the dataset streams it reads
CAMERAS = {"scene": ("scene_cam",), "wrist": ("wrist_cam",), "both": ("scene_cam", "wrist_cam")}
TARGETS = ("turn", "block")
#: the moments of an episode the table reports: JSON key -> column label
MOMENTS = {"all": "all steps", "first_step": "first step", "over_block": "first over the block"}


def tool_yaw(ee_pose):
    """(N,) the tool's yaw from its home orientation (rad), from (N, 9) ``ee_pose`` rows
    (position, then the rotation's first two columns). The home rotation flips x and z, so
    the yaw is that of the negated first column."""
    import numpy as np

    return np.arctan2(-ee_pose[:, 4], -ee_pose[:, 3])


def load(path: str, episodes: range, every: int):
    """Every ``every``-th step of ``episodes``: images per stream (uint8), instruction ids and
    masks, the two targets as ``(sin 4 a, cos 4 a)`` (name -> (N, 2)), task names, and the
    masks of :data:`MOMENTS` (``every`` = 1 for held-out episodes, so that the first step
    over the block is found)."""
    import numpy as np

    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.envs.privileged import turn_from_target, yaw_target
    from mmrobot.policies.tokenizers import ByteTokenizer

    ds, tok = DemoDataset(path), ByteTokenizer(64)
    images = {s: [] for s in CAMERAS["both"]}
    ids, masks, turn, block, tasks, episode_of, rel, first = [], [], [], [], [], [], [], []
    for e in episodes:
        aux = ds.aux(e, ["block_yaw", "block_rel"])
        if "block_yaw" not in aux:
            raise SystemExit(f"{path} records no block_yaw target: re-collect it (mmrobot collect)")
        for s in images:
            images[s].append(ds.stream(e, s)[::every])
        ee = ds.stream(e, "ee_pose")[::every]
        ee = ee[:, -1] if ee.ndim == 3 else ee  # the newest sample of a history window
        t = aux["block_yaw"][::every]
        turn.append(t)
        block.append(yaw_target(turn_from_target(t) + tool_yaw(ee)))
        rel.append(aux["block_rel"][::every])
        n = len(t)
        i, m = tok.encode(ds.info(e).instruction)
        ids += [i] * n
        masks += [m] * n
        tasks += [ds.info(e).task.split()[0]] * n
        episode_of += [e] * n
        first += [True] + [False] * (n - 1)
    rel_all, episode_of = np.concatenate(rel), np.array(episode_of)
    return {
        "images": {s: np.concatenate(v) for s, v in images.items()},
        "ids": np.stack(ids),
        "masks": np.stack(masks),
        "targets": {"turn": np.concatenate(turn), "block": np.concatenate(block)},
        "tasks": np.array(tasks),
        "moments": {
            "all": np.ones(len(episode_of), dtype=bool),
            "first_step": np.array(first),
            "over_block": first_over_block(rel_all, episode_of),
        },
    }


def probe(train, val, cameras: str, target: str, steps: int, lr: float, seed: int = 0):
    """(N, 2) validation predictions after ``steps`` steps of batch 32."""
    import torch
    from torch import nn

    from mmrobot.policies.encoders import ImageEncoder, InstructionEncoder

    torch.manual_seed(seed)
    width, streams = 128, CAMERAS[cameras]

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.text = InstructionEncoder(259, 64, 4, width)
            shape = tuple(train["images"][streams[0]].shape[1:])
            # one stem for every camera, as in the policy
            self.image = ImageEncoder(shape, (16, 32, 64), 4, width, True, True, 10.0)
            self.head = nn.Sequential(
                nn.Linear(2 * width * len(streams), width), nn.GELU(), nn.Linear(width, 2)
            )

        def forward(self, images, ids, mask):
            text, valid = self.text(ids, mask)
            w = valid.float().unsqueeze(-1)
            cond = (text * w).sum(1) / w.sum(1)
            feats = []
            for im in images:
                x = self.image(im, cond)
                feats += [x.mean(1), x[:, -1]]  # the policy's camera summary
            return self.head(torch.cat(feats, dim=-1))

    def inputs(data, idx):
        ims = [torch.from_numpy(data["images"][s][idx]) for s in streams]
        return ims, torch.from_numpy(data["ids"][idx]), torch.from_numpy(data["masks"][idx])

    model = Probe()
    opt = torch.optim.AdamW(model.parameters(), lr)
    y = torch.from_numpy(train["targets"][target]).float()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(0, len(y), (32,), generator=gen).numpy()
        loss = ((model(*inputs(train, idx)) - y[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    n = len(val["tasks"])
    with torch.no_grad():
        return torch.cat([model(*inputs(val, slice(i, i + 256))) for i in range(0, n, 256)]).numpy()


def scores(pred, val, target: str) -> dict:
    """Per task and moment: median turn error (deg), share of right directions, steps."""
    import numpy as np

    out = {}
    for task in sorted(set(val["tasks"])):
        for moment, at in val["moments"].items():
            rows = (val["tasks"] == task) & at
            err, right = turn_errors(pred[rows], val["targets"][target][rows])
            out[f"{task}/{moment}"] = {
                "median_deg": float(np.median(err)) if len(err) else None,
                "right_way": float(right.mean()) if len(err) else None,
                "steps": int(rows.sum()),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="demonstrations with block_yaw")
    parser.add_argument(
        "--variants",
        nargs="+",
        default=["scene:block", "wrist:turn", "both:turn"],
        help="CAMERAS:TARGET pairs; cameras scene, wrist or both; target turn or block",
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--every", type=int, default=2, help="training steps: every N-th")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--quick", action="store_true", help="50 steps (a smoke run)")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()
    variants = []
    for v in args.variants:
        cams, _, target = v.partition(":")
        if cams not in CAMERAS or target not in TARGETS:
            parser.error(
                f"--variants {v!r}: expected CAMERAS:TARGET with CAMERAS one of "
                f"{sorted(CAMERAS)} and TARGET one of {list(TARGETS)}"
            )
        variants.append((cams, target))

    import numpy as np

    from mmrobot.envs.dataset import DemoDataset

    use_allowed_cores()
    n = len(DemoDataset(args.dataset))
    n_val = max(1, int(n * args.val_fraction))
    train = load(args.dataset, range(0, n - n_val), args.every)
    val = load(args.dataset, range(n - n_val, n), 1)
    steps = 50 if args.quick else args.steps
    load_before = os.getloadavg()[0]
    tasks = sorted(set(val["tasks"]))

    def cells(res):
        return [
            f"{res[f'{t}/{m}']['median_deg']:.1f} / {100 * res[f'{t}/{m}']['right_way']:.0f} %"
            if res[f"{t}/{m}"]["steps"]
            else "-"
            for t in tasks
            for m in MOMENTS
        ]

    rows, results = [], []
    for target in sorted({t for _, t in variants}):  # the baseline: predict no turn at all
        res = scores(np.tile([0.0, 1.0], (len(val["tasks"]), 1)), val, target)
        rows.append([f"no turn ({target})", *cells(res), "-"])
        results.append({"variant": f"no turn ({target})", "results": res})
    for cams, target in variants:
        t0 = time.perf_counter()
        pred = probe(train, val, cams, target, steps, args.lr)
        sec = time.perf_counter() - t0
        res = scores(pred, val, target)
        rows.append([f"{cams} -> {target}", *cells(res), f"{sec:.0f}"])
        results.append(
            {
                "variant": f"{cams} -> {target}",
                "cameras": cams,
                "target": target,
                "results": res,
                "seconds": sec,
            }
        )
    load_after = os.getloadavg()[0]
    print_table(
        f"yaw probe: {steps} steps, lr {args.lr:g}, {n - n_val} training / {n_val} held-out "
        f"episodes of {args.dataset}; median error (deg) / direction right; "
        f"a guess: 22.5 / 50 %; load {load_before:.2f} -> {load_after:.2f}",
        ["variant", *(f"{t} {MOMENTS[m]}" for t in tasks for m in MOMENTS), "seconds"],
        rows,
    )
    write_trained_probe_json(
        args, "yaw_probe", steps, (n - n_val, n_val), [load_before, load_after], results
    )


if __name__ == "__main__":
    main()
