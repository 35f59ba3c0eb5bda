"""Does a checkpoint grasp the same way whatever the grasp is for? An offline probe.

Pick, place and stack start with the same motion: the scripted expert grasps the named block
the same way whatever comes next. This probe takes the steps before the first grasp of
recorded pick, place and stack episodes (the ``held`` target is still False) and asks the
checkpoint for its first action there with the instruction of each grasping task naming the
same block (pick and place; stack only where the episode is a stack, since it needs a base
block). The expert's step is the same for all of them, so a policy that learnt one grasp
misses it by the same amount with every instruction; a policy that learnt one grasp per task
misses it by more with another task's words. Reported: the mean x-y distance (mm) between
the argmax-decoded first step and the expert's, and its mean component toward the bin.

Usage: python benchmarks/task_probe.py --checkpoint policies/release --dataset DEMOS.h5
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

GRASPING = ("pick", "place", "stack")


def pregrasp_errors(model, demos, episodes: list[int], instruct: str) -> dict[str, float]:
    """Mean x-y error (mm) of the first chunk step against the expert's, and its mean
    component toward the bin (mm), over the pre-grasp samples of ``episodes``, every one
    read with a ``instruct`` instruction naming the episode's block."""
    import numpy as np
    import torch

    from mmrobot.envs.instructions import make_instruction
    from mmrobot.envs.tasks import TaskSpec
    from mmrobot.policies import ActionTokenizer
    from mmrobot.policies.collate import INSTRUCTION_MASK, INSTRUCTION_TOKENS
    from mmrobot.policies.model import batch_to_torch
    from mmrobot.policies.tokenizers import ByteTokenizer
    from mmrobot.train.data import ChunkSamples
    from mmrobot.train.relabel import bin_position

    cfg = model.config
    tok, words = ActionTokenizer.from_config(cfg.action), ByteTokenizer(cfg.language.max_len)
    samples = ChunkSamples(demos, cfg.streams, cfg.action.horizon, cfg.language.max_len,
                           episodes=episodes, aux=("held",))  # fmt: skip
    rows = np.flatnonzero(samples.pregrasp > 0)
    rng = np.random.default_rng(0)
    bin_xy = bin_position()[:2]
    errors, toward = [], []
    with torch.no_grad():
        for a in range(0, len(rows), 128):
            idx = rows[a : a + 128]
            batch, chunks = samples.batch(idx)
            for r, k in enumerate(idx):
                spec = TaskSpec.parse(samples.tasks[samples.episode_of[k]])
                params = dict(spec.params) if instruct == spec.task else {
                    "color": spec.params["color"], "size": spec.params["size"]}  # fmt: skip
                text = make_instruction(TaskSpec(instruct, params), rng, "train")
                batch[INSTRUCTION_TOKENS][r], batch[INSTRUCTION_MASK][r] = words.encode(text)
            logits = model(batch_to_torch(batch)).float().numpy()
            step = tok.decode_logits(logits, "argmax")[:, 0, :2] - chunks[:, 0, :2]
            to_bin = bin_xy - samples.tcp[idx, :2]  # NaN where the dataset has no TCP
            to_bin /= np.linalg.norm(to_bin, axis=1, keepdims=True)
            errors.append(np.linalg.norm(step, axis=1))
            toward.append((step * to_bin).sum(axis=1))
    err, tw = np.concatenate(errors), np.concatenate(toward)
    return {"xy_error_mm": 1e3 * float(err.mean()), "toward_bin_mm": 1e3 * float(tw.mean()),
            "samples": len(err)}  # fmt: skip


def main() -> None:
    args = probe_parser(__doc__.split("\n\n")[0]).parse_args()

    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.policies.checkpoint import load_checkpoint

    use_allowed_cores()
    model = load_checkpoint(args.checkpoint).eval()
    demos = DemoDataset(args.dataset)
    by_task = {t: e for t, e in episodes_by_task(demos, args.episodes).items() if t in GRASPING}
    if not by_task:
        raise SystemExit(f"{args.dataset} has no successful {'/'.join(GRASPING)} episodes")
    load_before = os.getloadavg()[0]
    rows, results = [], {}
    for task in sorted(by_task):
        results[task] = {}
        for instruct in ("pick", "place") + (("stack",) if task == "stack" else ()):
            r = pregrasp_errors(model, demos, by_task[task], instruct)
            results[task][instruct] = r
            own = " (its own)" if instruct == task else ""
            rows.append([task, f"{instruct}{own}", str(r["samples"]),
                         f"{r['xy_error_mm']:.2f}", f"{r['toward_bin_mm']:+.2f}"])  # fmt: skip
    print_table(
        f"first x-y step before the grasp against the expert's, by instruction: "
        f"{args.checkpoint} on {args.dataset}; load {load_before:.2f}",
        ["episodes", "instruction", "samples", "x-y error (mm)", "toward the bin (mm)"],
        rows,
    )
    write_probe_json(args, "task_probe", load_before, results)


if __name__ == "__main__":
    main()
