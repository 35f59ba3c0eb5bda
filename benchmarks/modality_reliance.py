"""How much a trained policy relies on each input: its loss with one input removed at a time.

Takes samples of a demonstration dataset, computes the action-token cross-entropy and token
accuracy of a checkpoint with everything present, then with each stream marked invalid (as
a missing sensor is), and with the instructions shuffled across the batch. An input whose
removal barely changes the loss is one the policy does not use.

Usage: python benchmarks/modality_reliance.py --checkpoint policies/release
           --dataset data/demos.h5 [--samples 192] [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

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
    from mmrobot.policies import ActionTokenizer, batch_to_torch, collate, load_checkpoint
    from mmrobot.policies.collate import INSTRUCTION_MASK, INSTRUCTION_TOKENS, stream_keys
    from mmrobot.train.data import ChunkSamples
    from mmrobot.train.trainer import token_loss

    torch.set_num_threads(1)
    model = load_checkpoint(args.checkpoint).eval()
    cfg = model.config
    demos = DemoDataset(args.dataset)
    samples = ChunkSamples(
        demos, cfg.streams, cfg.action.horizon, episodes=list(range(0, len(demos), 5))
    )
    n = 32 if args.quick else args.samples
    idx = np.random.default_rng(0).integers(0, len(samples), n)
    obs, texts, chunks = zip(*(samples.sample(int(i)) for i in idx))
    batch = collate(obs, texts, cfg.streams, model.tokenizer)
    targets = torch.as_tensor(ActionTokenizer.from_config(cfg.action).encode(np.stack(chunks)))

    def measure(b: dict[str, np.ndarray]) -> tuple[float, float]:
        with torch.inference_mode():
            loss, acc = token_loss(model(batch_to_torch(b)), targets)
        return float(loss), float(acc)

    variants: dict[str, dict[str, np.ndarray]] = {"all inputs": batch}
    cams = [s.name for s in cfg.streams if s.modality == "camera"]
    groups = {
        "no cameras": cams,
        **{f"no {s.name}": [s.name] for s in cfg.streams if s.modality != "camera"},
    }
    for label, names in groups.items():
        b = dict(batch)
        for name in names:
            key = stream_keys(name)[1]
            b[key] = np.zeros_like(b[key])
        variants[label] = b
    shuffled = dict(batch)
    for key in (INSTRUCTION_TOKENS, INSTRUCTION_MASK):
        shuffled[key] = np.roll(batch[key], 1, axis=0)
    variants["instructions shuffled"] = shuffled
    results = {
        label: dict(zip(("loss", "token_accuracy"), measure(b))) for label, b in variants.items()
    }
    base = results["all inputs"]["loss"]
    rows = [
        [label, f"{r['loss']:.3f}", f"{r['loss'] - base:+.3f}", f"{r['token_accuracy']:.3f}"]
        for label, r in results.items()
    ]
    print_table(
        f"modality reliance: {args.checkpoint}, {n} samples of {args.dataset}",
        ["input", "loss", "vs all", "token accuracy"],
        rows,
    )
    write_json(
        args.json,
        {
            "bench": "modality_reliance",
            "checkpoint": args.checkpoint,
            "samples": n,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
