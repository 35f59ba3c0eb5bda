"""How far from the expert's action is each way of decoding a policy's action bins? Offline.

A policy emits, per chunk step and action dimension, a distribution over bins
(``action.bins``, 0.16 mm wide for a 2 cm step). ``action.decode`` turns it into an action:
the most probable bin (``argmax``), the distribution's median or its mean
(:meth:`mmrobot.policies.ActionTokenizer.decode_logits`). The scripted expert's translation
deltas sit mostly on point masses (0, and the 2 cm clip), so a policy unsure whether the
gripper is there yet spreads its mass over both; the argmax then jumps to one of them. This
probe scores each decoding against the expert's labels on recorded episodes (use seeds the
policy was not trained on), per task: the mean absolute error of the translation (dx, dy,
dz) at the chunk's first step, at every step, and at the first step where the expert's delta
is a fine one (0.5 to 19 mm, neither at rest nor clipped: the final approach).

A second table scores the tool's turn (dyaw) at the chunk's first step, at the steps where
the expert turns (more than 0.05 rad): the share that turns its way (0.02 rad or more),
not at all, or the other way, and the mean size of the decoded turn; and the same at the
first step of each of the expert's turns only (its onset), where nothing in the tool's own
motion says yet which way to turn. The expert turns the tool square to the block's faces
before it grasps (docs/policy-trials.md, "the policy does not turn the tool").

Usage: python benchmarks/decode_probe.py --checkpoint policies/release --dataset D.h5
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

DECODINGS = ("argmax", "median", "mean")
FINE_M = (0.0005, 0.019)  # expert deltas between these are "fine" (not at rest, not clipped)
YAW = 5  # the dyaw dimension of an action
TURN_RAD = 0.05  # the expert turns at a step where its |dyaw| is over this
NO_TURN_RAD = 0.02  # a decoded |dyaw| under this is no turn


def turn_shares(pred, label) -> dict[str, float]:
    """Decoded first-step yaw deltas ``pred`` against the expert's ``label`` (rad, (N,)), at
    the steps where the expert turns: shares that turn its way, not at all, the other way."""
    import numpy as np

    pred, label = np.asarray(pred, float), np.asarray(label, float)
    turn = np.abs(label) > TURN_RAD
    p, y = pred[turn], label[turn]
    moves = np.abs(p) >= NO_TURN_RAD
    n = max(int(turn.sum()), 1)
    return {
        "turn_steps": int(turn.sum()),
        "turn_its_way": float((moves & (np.sign(p) == np.sign(y))).sum() / n),
        "turn_none": float((~moves).sum() / n),
        "turn_other_way": float((moves & (np.sign(p) != np.sign(y))).sum() / n),
        "turn_size_rad": float(np.abs(p).mean()) if len(p) else float("nan"),
    }


def turn_onsets(label, episode_of):
    """(N,) bool: the steps where the expert turns (``|label| > TURN_RAD``) and did not at the
    same episode's previous step; ``label`` (N,) dyaw labels in episode and step order."""
    import numpy as np

    turn = np.abs(np.asarray(label)) > TURN_RAD
    episode_of = np.asarray(episode_of)
    before = np.concatenate([[False], turn[:-1] & (episode_of[1:] == episode_of[:-1])])
    return turn & ~before


def decode_errors(model, demos, episodes: list[int]) -> dict[str, dict[str, float]]:
    """Per decoding: translation MAE (mm) at the first chunk step, at every step, and at the
    first step where the expert's delta is fine, over every sample of ``episodes``."""
    import numpy as np
    import torch

    from mmrobot.policies import ActionTokenizer
    from mmrobot.policies.model import batch_to_torch
    from mmrobot.train.data import ChunkSamples

    cfg = model.config
    tok = ActionTokenizer.from_config(cfg.action)
    samples = ChunkSamples(demos, cfg.streams, cfg.action.horizon, cfg.language.max_len,
                           episodes=episodes)  # fmt: skip
    decoded: dict[str, list[np.ndarray]] = {d: [] for d in DECODINGS}
    yaws: dict[str, list[np.ndarray]] = {d: [] for d in DECODINGS}
    labels, yaw_labels = [], []
    with torch.no_grad():
        for a in range(0, len(samples), 128):
            batch, chunks = samples.batch(np.arange(a, min(a + 128, len(samples))))
            logits = model(batch_to_torch(batch)).float().numpy()
            for d in DECODINGS:
                actions = tok.decode_logits(logits, d)
                decoded[d].append(actions[..., :3])
                yaws[d].append(actions[:, 0, YAW])
            labels.append(chunks[..., :3])
            yaw_labels.append(chunks[:, 0, YAW])
    y = np.concatenate(labels)
    yaw_y = np.concatenate(yaw_labels)
    onset = turn_onsets(yaw_y, samples.episode_of)
    fine = (np.abs(y[:, 0]) > FINE_M[0]) & (np.abs(y[:, 0]) < FINE_M[1])
    out = {}
    for d in DECODINGS:
        err_mm = 1e3 * np.abs(np.concatenate(decoded[d]) - y)
        yaw_d = np.concatenate(yaws[d])
        out[d] = {
            "first_step_mm": float(err_mm[:, 0].mean()),
            "all_steps_mm": float(err_mm.mean()),
            "fine_first_step_mm": float(err_mm[:, 0][fine].mean()) if fine.any() else float("nan"),
            "fine_share": float(fine.mean()),
            "samples": len(y),
            **turn_shares(yaw_d, yaw_y),
            **{f"onset_{k}": v for k, v in turn_shares(yaw_d[onset], yaw_y[onset]).items()},
        }
    return out


def main() -> None:
    args = probe_parser(__doc__.split("\n\n")[0], "checkpoint folder").parse_args()

    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.policies.checkpoint import load_checkpoint

    use_allowed_cores()
    model = load_checkpoint(args.checkpoint).eval()
    demos = DemoDataset(args.dataset)
    by_task = episodes_by_task(demos, args.episodes)
    load_before = os.getloadavg()[0]
    rows, turns, onsets, results = [], [], [], {}
    for task in sorted(by_task):
        results[task] = decode_errors(model, demos, by_task[task])
        for d, r in results[task].items():
            rows.append([task, d, f"{r['first_step_mm']:.2f}", f"{r['all_steps_mm']:.2f}",
                         f"{r['fine_first_step_mm']:.2f} ({100 * r['fine_share']:.0f} %)"])  # fmt: skip
            turns.append([task, d, str(r["turn_steps"]), f"{100 * r['turn_its_way']:.0f} %",
                          f"{100 * r['turn_none']:.0f} %", f"{100 * r['turn_other_way']:.0f} %",
                          f"{r['turn_size_rad']:.3f}"])  # fmt: skip
            onsets.append([task, d, str(r["onset_turn_steps"]),
                           *(f"{100 * r[f'onset_turn_{k}']:.0f} %" for k in ("its_way", "none", "other_way"))])  # fmt: skip
    print_table(
        f"translation error against the expert by decoding: {args.checkpoint} on "
        f"{args.dataset}; load {load_before:.2f}",
        ["task", "decode", "first step (mm)", "all steps (mm)", "fine first steps (share)"],
        rows,
    )
    print_table(
        f"the tool's turn (dyaw, first step) where the expert turns more than {TURN_RAD} rad",
        ["task", "decode", "steps", "its way", "no turn", "the other way", "size (rad)"],
        turns,
    )
    print_table(
        "the same at the first step of each of the expert's turns (nothing in the tool's motion "
        "says its direction yet)",
        ["task", "decode", "steps", "its way", "no turn", "the other way"],
        onsets,
    )
    write_probe_json(args, "decode_probe", load_before, results)


if __name__ == "__main__":
    main()
