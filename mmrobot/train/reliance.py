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

__all__ = ["ALL_INPUTS", "SHUFFLED", "modality_reliance", "reliance_table"]

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
        {label: {"loss", "token_accuracy"[, "block_rms_cm"]}}}``, labels in order: ``"all
        inputs"``, ``"no cameras"``, ``"no <stream>"`` for every other stream,
        ``"instructions shuffled"``. ``block_rms_cm`` (where the policy has a ``block_rel``
        head and the dataset that target): the RMS error, in the table plane (x, y), of the
        head's estimate of where the named block is.
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
    # where the policy has a block_rel head and the dataset the target: how well it locates
    # the named block (an action loss can hide that the policy never looks at the cameras)
    locate = "block_rel" in model.aux_heads and "block_rel" in demos.aux(0)
    chunks = ChunkSamples(
        demos,
        cfg.streams,
        cfg.action.horizon,
        cfg.language.max_len,
        episodes=None if episodes is None else list(episodes),
        aux=["block_rel"] if locate else [],
    )
    idx = np.random.default_rng(seed).integers(0, len(chunks), samples)
    obs, texts, targets_f = zip(*(chunks.sample(int(i)) for i in idx))
    batch = collate(obs, texts, cfg.streams, model.tokenizer)
    targets = torch.as_tensor(ActionTokenizer.from_config(cfg.action).encode(np.stack(targets_f)))
    block_cm = 100.0 * chunks.aux["block_rel"][idx] if locate else None

    def measure(b: dict[str, np.ndarray]) -> dict[str, float]:
        with torch.inference_mode():
            logits, aux = model(batch_to_torch(b), with_aux=True)
            loss, acc = token_loss(logits, targets)
        out = {"loss": float(loss), "token_accuracy": float(acc)}
        if block_cm is not None:
            err = aux["block_rel"].float().numpy() - block_cm
            out["block_rms_cm"] = float(np.sqrt((err[:, :2] ** 2).sum(1).mean()))
        return out

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


def reliance_table(results: dict[str, dict[str, float]]) -> tuple[list[str], list[list[str]]]:
    """(columns, rows) of a :func:`modality_reliance` ``results`` mapping, as the model card
    and ``benchmarks/modality_reliance.py`` print it."""
    base = results[ALL_INPUTS]["loss"]
    locate = all("block_rms_cm" in r for r in results.values())
    columns = ["input", "loss", "vs all inputs", "token accuracy"]
    columns += ["named block error (cm, x-y RMS)"] if locate else []
    rows = [
        [label, f"{r['loss']:.3f}", f"{r['loss'] - base:+.3f}", f"{r['token_accuracy']:.3f}"]
        + ([f"{r['block_rms_cm']:.2f}"] if locate else [])
        for label, r in results.items()
    ]
    return columns, rows
