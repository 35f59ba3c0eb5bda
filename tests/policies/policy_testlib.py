"""Shared helpers for the policy tests: a tiny config and synthetic observations."""

from __future__ import annotations

import numpy as np

from mmrobot.core.types import Observation, StreamSpec
from mmrobot.policies.config import PolicyConfig

TINY_STREAMS = (
    StreamSpec("cam_a", "camera", (32, 32, 3), "uint8", 30.0, max_age_ns=100_000_000),
    StreamSpec("cam_b", "camera", (32, 32, 3), "uint8", 30.0, max_age_ns=100_000_000),
    StreamSpec("lidar", "lidar", (64, 3), "float32", 10.0, max_age_ns=250_000_000),
    StreamSpec(
        "ft", "force", (6,), "float32", 500.0, policy="interp", max_age_ns=20_000_000, history=4
    ),
    StreamSpec(
        "joints",
        "joints",
        (7,),
        "float32",
        200.0,
        policy="interp",
        max_age_ns=20_000_000,
        history=4,
    ),
)


def tiny_config(
    fusion: str = "mid",
    decoding: str = "parallel",
    camera: dict | None = None,
    training: dict | None = None,
    language: dict | None = None,
    **model: object,
) -> PolicyConfig:
    """A config small enough to train in a test in a few seconds."""
    return PolicyConfig.from_dict(
        {
            "model": {
                "width": 32,
                "depth": 2,
                "heads": 2,
                "dropout": 0.0,
                "fusion": fusion,
                "decoding": decoding,
                "early_tokens": 4,
                "early_dim": 4,
                **model,
            },
            "language": {"max_len": 16, **(language or {})},
            "camera": {"stem_channels": [8], "grid": 2, **(camera or {})},
            "lidar": {"groups": 8, "group_size": 8, "hidden": 16},
            "vector": {"hidden": 32, "tokens": 1},
            "action": {"dim": 3, "horizon": 2, "bins": 16, "low": [-1, -1, 0], "high": [1, 1, 1]},
            "streams": [s.to_dict() for s in TINY_STREAMS],
            **({"training": training} if training else {}),
        }
    )


def random_observation(specs, rng: np.random.Generator, t_ns: int = 1_000_000_000) -> Observation:
    values, ages, valid = {}, {}, {}
    for s in specs:
        if s.np_dtype == np.uint8:
            v = rng.integers(0, 256, size=s.obs_shape, dtype=np.uint8)
        else:
            v = rng.normal(size=s.obs_shape).astype(s.dtype)
        if s.modality == "lidar":
            v[rng.random(s.shape[0]) < 0.2] = 0.0  # rays with no return
        values[s.name] = v
        ages[s.name] = int(rng.integers(0, s.max_age_ns))
        valid[s.name] = True
    return Observation(t_ns=t_ns, values=values, ages_ns=ages, valid=valid)


def tiny_batch(config: PolicyConfig, n: int, seed: int = 0, instruction: str = "pick up the cube"):
    """Torch batch of ``n`` random observations (imports torch)."""
    from mmrobot.policies import ByteTokenizer, batch_to_torch, collate

    rng = np.random.default_rng(seed)
    obs = [random_observation(config.streams, rng) for _ in range(n)]
    instr = [f"{instruction} {i}" for i in range(n)]
    return batch_to_torch(
        collate(obs, instr, config.streams, ByteTokenizer(config.language.max_len))
    )
