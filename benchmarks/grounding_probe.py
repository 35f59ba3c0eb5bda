"""Does a trained policy's camera find the block the instruction names? Per task, offline.

A checkpoint trained with ``training.encoder_aux`` has camera heads that predict the named
block's base-frame position from the cameras and the instruction alone (docs/policy-trials.md).
This probe runs them on recorded episodes (``mmrobot collect``; use seeds the policy was not
trained on) and prints, per task, the x-y error over all steps and at each episode's first
step. At the first step every block is where the scene put it, so only the instruction says
which one is meant: a task whose first-step error is far above the others' is a grounding
failure, not a precision one (a stack instruction names two blocks).

A checkpoint with a fused ``block_yaw`` head (the tool's turn to the named block's faces,
``training.aux_weights``) or a camera one (``training.camera_yaw``) on a dataset that records
that target gets a second table: each such head's turn error, and the share whose direction is right, at two moments of each episode:
its first step, where the block is turned as the scene put it and the expert has not turned
yet (a guess is 22.5 degrees off in the median), and its first step over the block (the TCP
within 1.5 cm of it, x-y), where the wrist camera shows the block's edges and an expert with
``--expert-turn over_block`` has not turned yet either.

Usage: python benchmarks/grounding_probe.py --checkpoint policies/release --dataset D.h5
           [--episodes 20] [--json PATH]
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    episodes_by_task,
    print_table,
    probe_parser,
    use_allowed_cores,
    write_probe_json,
)

#: the steps of each episode where the turn head is read: JSON key prefix -> table label
TURN_MOMENTS = {"first_step": "first step", "over_block": "first over the block"}


def task_errors(model, demos, episodes: list[int], turn_heads: tuple[str, ...] = ()):
    """(N,) x-y errors (cm) of the camera head's block estimate at every step of ``episodes``,
    (N,) whether each is an episode's first step, and for each of ``turn_heads`` (``block_yaw``
    heads: ``"block_yaw"``, ``"camera/block_yaw"``; the dataset must record the target)
    :func:`turn_errors` at the :data:`TURN_MOMENTS` of each episode (head -> moment ->
    errors), from the same forward passes."""
    import numpy as np
    import torch

    from mmrobot.policies.model import batch_to_torch
    from mmrobot.train.data import ChunkSamples

    cfg = model.config
    samples = ChunkSamples(
        demos,
        cfg.streams,
        cfg.action.horizon,
        cfg.language.max_len,
        episodes=episodes,
        aux=["block_rel", "tcp", *(["block_yaw"] if turn_heads else [])],
    )
    errors, turn_pred = [], {h: [] for h in turn_heads}
    with torch.no_grad():
        for a in range(0, len(samples), 256):
            idx = np.arange(a, min(a + 256, len(samples)))
            batch, _ = samples.batch(idx)
            _, aux = model(batch_to_torch(batch), with_aux=True)
            if "camera/block_rel" in aux:
                true_cm = 100.0 * (samples.aux["block_rel"][idx] + samples.aux["tcp"][idx])
                found = aux["camera/block_rel"].numpy()[:, :2]
                errors.append(np.linalg.norm(found - true_cm[:, :2], axis=1))
            for h in turn_heads:
                turn_pred[h].append(aux[h].numpy())
    err = np.concatenate(errors) if errors else None
    first = samples.step_of == 0
    over = first_over_block(samples.aux["block_rel"], samples.episode_of)
    at = {"first_step": first, "over_block": over}
    turns = {}
    for h, parts in turn_pred.items():
        pred, true = np.concatenate(parts), samples.aux["block_yaw"]
        turns[h] = {m: turn_errors(pred[at[m]], true[at[m]]) for m in TURN_MOMENTS}
    return err, first, turns


def first_over_block(block_rel, episode_of):
    """(N,) bool: each episode's first step with the TCP within the over_block expert's
    turning radius (``TURN_OVER_M``, x-y) of the block, from (N, 3) ``block_rel`` targets and (N,) episode indices (episodes that never
    get there have none)."""
    import numpy as np

    from mmrobot.envs.experts import TURN_OVER_M

    near = np.linalg.norm(block_rel[:, :2], axis=1) < TURN_OVER_M
    at = np.zeros(len(near), dtype=bool)
    for e in np.unique(episode_of):
        steps = np.flatnonzero((episode_of == e) & near)
        if steps.size:
            at[steps[0]] = True
    return at


def turn_errors(pred, true):
    """Turn-head predictions against targets, both (N, 2) ``(sin 4 phi, cos 4 phi)``:
    (N,) errors in degrees of turn (at most 45) and (N,) whether the direction agrees."""
    import numpy as np

    from mmrobot.envs.privileged import turn_from_target

    p, t = np.degrees(turn_from_target(pred)), np.degrees(turn_from_target(true))
    return np.abs((p - t + 45.0) % 90.0 - 45.0), np.sign(p) == np.sign(t)


def main() -> None:
    args = probe_parser(
        __doc__.split("\n\n")[0], "checkpoint folder with camera heads"
    ).parse_args()

    import numpy as np

    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.policies.checkpoint import load_checkpoint
    from mmrobot.train.data import NO_FACE_TURN

    use_allowed_cores()
    model = load_checkpoint(args.checkpoint)
    if not model.camera_aux_heads:
        raise SystemExit(
            f"{args.checkpoint} has no camera heads: it was trained without "
            "training.encoder_aux, so there is nothing to probe"
        )
    demos = DemoDataset(args.dataset)
    by_task = episodes_by_task(demos, args.episodes)
    load_before = os.getloadavg()[0]
    first_episode = by_task[min(by_task)][0]
    recorded = "block_yaw" in demos.aux(first_episode, ["block_yaw"])
    turn_heads = tuple(
        h
        for h, heads in (
            ("block_yaw", model.aux_heads),
            ("camera/block_yaw", model.camera_aux_heads),
        )
        if recorded and "block_yaw" in heads
    )
    rows, turn_rows, results = [], [], {}
    for task in sorted(by_task):
        # push's expert does not turn to the block's faces: no turn target (NO_FACE_TURN)
        heads = () if task in NO_FACE_TURN else turn_heads
        err, first, turns = task_errors(model, demos, by_task[task], heads)
        doc = results[task] = {"episodes": len(by_task[task])}
        if err is not None:  # a block_rel camera head
            doc["median_cm"] = float(np.median(err))
            doc["first_step_median_cm"] = float(np.median(err[first]))
            doc["first_step_p90_cm"] = float(np.percentile(err[first], 90))
            rows.append(
                [
                    task,
                    str(doc["episodes"]),
                    f"{doc['median_cm']:.2f}",
                    f"{doc['first_step_median_cm']:.2f}",
                    f"{doc['first_step_p90_cm']:.2f}",
                ]
            )
        for head, moments in turns.items():
            key = "" if head == "block_yaw" else "camera_"  # the fused head keeps its keys
            for moment, (t_err, right) in moments.items():
                if not len(t_err):
                    continue
                doc[f"{key}{moment}_turn_median_deg"] = float(np.median(t_err))
                doc[f"{key}{moment}_turn_right_way"] = float(right.mean())
                doc[f"{key}{moment}_turn_episodes"] = len(t_err)
                turn_rows.append(
                    [
                        task,
                        head,
                        TURN_MOMENTS[moment],
                        str(len(t_err)),
                        f"{np.median(t_err):.1f}",
                        f"{100 * right.mean():.0f} %",
                    ]
                )
    if rows:
        print_table(
            f"camera head x-y error of the named block: {args.checkpoint} on {args.dataset}; "
            f"load {load_before:.2f}",
            ["task", "episodes", "all steps, median (cm)", "first step, median", "first step, p90"],
            rows,
        )
    if turn_rows:
        print_table(
            "the block_yaw heads' turn to the named block's faces (a guess: 22.5 degrees, 50 %); "
            f"{args.checkpoint} on {args.dataset}; load {load_before:.2f}",
            ["task", "head", "step", "episodes", "error, median (deg)", "direction right"],
            turn_rows,
        )
    write_probe_json(args, "grounding_probe", load_before, results)


if __name__ == "__main__":
    main()
