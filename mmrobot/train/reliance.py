"""How much a trained policy relies on each input: its loss with one input removed at a time.

On samples of a demonstration dataset, the action-token cross-entropy and token accuracy of a
checkpoint with everything present, then with each stream marked invalid (as a missing
sensor is; all cameras together), and with the instructions shuffled across the batch. An
input whose removal barely changes the loss is one the policy does not use.

``benchmarks/modality_reliance.py`` runs it from the command line; ``mmrobot release``
measures it on a held-out slice and quotes it in the model card.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ALL_INPUTS", "SHUFFLED", "modality_reliance"]

#: Row labels of the reference measurement and of the shuffled instructions.
ALL_INPUTS = "all inputs"
SHUFFLED = "instructions shuffled"


def modality_reliance(
    checkpoint: str | Path,
    dataset: str | Path,
    samples: int = 192,
    episodes: Sequence[int] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Loss and token accuracy of ``checkpoint`` with each input removed in turn.

    Args:
        checkpoint: a checkpoint folder (``config.json`` + ``model.safetensors``).
        dataset: an HDF5 demonstration dataset whose streams include the policy's.
        samples: (observation, action chunk) samples drawn, with replacement, from the
            used episodes.
        episodes: which episodes to draw from (default: every successful one).
        seed: seeds the draw, so that each row scores the same samples.

    Returns:
        ``{"checkpoint", "dataset", "samples", "episodes": episodes used, "results":
        {label: {"loss", "token_accuracy"}}}``, labels in order: ``"all inputs"``, ``"no
        cameras"``, ``"no <stream>"`` for every other stream, ``"instructions shuffled"``.
    """
    import torch

    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.policies import ActionTokenizer, batch_to_torch, collate, load_checkpoint
    from mmrobot.policies.collate import INSTRUCTION_MASK, INSTRUCTION_TOKENS, stream_keys
    from mmrobot.train.data import ChunkSamples
    from mmrobot.train.trainer import token_loss

    model = load_checkpoint(checkpoint).eval()
    cfg = model.config
    demos = DemoDataset(dataset)
    chunks = ChunkSamples(
        demos,
        cfg.streams,
        cfg.action.horizon,
        cfg.language.max_len,
        episodes=None if episodes is None else list(episodes),
    )
    idx = np.random.default_rng(seed).integers(0, len(chunks), samples)
    obs, texts, targets_f = zip(*(chunks.sample(int(i)) for i in idx))
    batch = collate(obs, texts, cfg.streams, model.tokenizer)
    targets = torch.as_tensor(ActionTokenizer.from_config(cfg.action).encode(np.stack(targets_f)))

    def measure(b: dict[str, np.ndarray]) -> dict[str, float]:
        with torch.inference_mode():
            loss, acc = token_loss(model(batch_to_torch(b)), targets)
        return {"loss": float(loss), "token_accuracy": float(acc)}

    variants: dict[str, dict[str, np.ndarray]] = {ALL_INPUTS: batch}
    cams = [s.name for s in cfg.streams if s.modality == "camera"]
    groups = {
        **({"no cameras": cams} if cams else {}),
        **{f"no {s.name}": [s.name] for s in cfg.streams if s.modality != "camera"},
    }
    for label, names in groups.items():
        b = dict(batch)
        for name in names:
            key = stream_keys(name)[1]  # the validity flag: the stream counts as missing
            b[key] = np.zeros_like(b[key])
        variants[label] = b
    shuffled = dict(batch)
    for key in (INSTRUCTION_TOKENS, INSTRUCTION_MASK):
        shuffled[key] = np.roll(batch[key], 1, axis=0)
    variants[SHUFFLED] = shuffled
    return {
        "checkpoint": str(checkpoint),
        "dataset": str(dataset),
        "samples": int(samples),
        "episodes": len(chunks.episodes),
        "results": {label: measure(b) for label, b in variants.items()},
    }
