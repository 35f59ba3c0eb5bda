"""How much a trained policy relies on each input: its loss with one input removed at a time.

Takes samples of a demonstration dataset, computes the action-token cross-entropy and token
accuracy of a checkpoint with everything present, then with each stream marked invalid (as
a missing sensor is), and with the instructions shuffled across the batch. An input whose
removal barely changes the loss is one the policy does not use. The measurement is
:func:`mmrobot.train.reliance.modality_reliance` (``mmrobot release`` quotes it in the model
card, measured on a held-out slice).

Usage: python benchmarks/modality_reliance.py --checkpoint policies/release
           --dataset data/demos.h5 [--samples 192] [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(ROOT / "policies" / "release"))
    parser.add_argument("--dataset", default=str(ROOT / "data" / "demos.h5"))
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--quick", action="store_true", help="32 samples")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    import torch

    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.train.reliance import modality_reliance, reliance_table

    torch.set_num_threads(1)
    n = 32 if args.quick else args.samples
    # every fifth episode of the dataset, as this benchmark has always measured
    episodes = range(0, len(DemoDataset(args.dataset)), 5)
    out = modality_reliance(args.checkpoint, args.dataset, samples=n, episodes=episodes)
    columns, rows = reliance_table(out["results"])
    print_table(
        f"modality reliance: {args.checkpoint}, {n} samples of {args.dataset}", columns, rows
    )
    write_json(
        args.json,
        {
            "bench": "modality_reliance",
            "checkpoint": args.checkpoint,
            "samples": n,
            "results": out["results"],
        },
    )


if __name__ == "__main__":
    main()
