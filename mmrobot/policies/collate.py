"""Collation: a batch of observations and instructions -> the named arrays the network takes.

Training, the torch policy and the ONNX Runtime policy all call :func:`collate`, and the
network's input names come from :func:`input_names`, so the layout is defined once, from the
observation spec. Imports numpy only.

For each stream ``s`` of the spec the batch holds:

* ``s``: (B, *s.obs_shape) values in the stream's dtype (zeros where invalid),
* ``s__valid``: (B,) bool,
* ``s__age_ns``: (B,) int64 age of the sample (0 where invalid),

plus ``instruction_tokens`` (B, L) int64 and ``instruction_mask`` (B, L) bool.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Observation, StreamSpec
from mmrobot.policies.tokenizers import ByteTokenizer

__all__ = ["INSTRUCTION_TOKENS", "INSTRUCTION_MASK", "input_names", "collate", "stream_keys"]

INSTRUCTION_TOKENS = "instruction_tokens"
INSTRUCTION_MASK = "instruction_mask"


def stream_keys(name: str) -> tuple[str, str, str]:
    """The three batch keys of one stream: value, validity, age."""
    return name, f"{name}__valid", f"{name}__age_ns"


def input_names(specs: Sequence[StreamSpec]) -> list[str]:
    """Batch keys in the network's positional order (also the ONNX input names)."""
    names = [INSTRUCTION_TOKENS, INSTRUCTION_MASK]
    for s in specs:
        names.extend(stream_keys(s.name))
    return names


def collate(
    observations: Sequence[Observation],
    instructions: Sequence[str],
    specs: Sequence[StreamSpec],
    tokenizer: ByteTokenizer,
) -> dict[str, np.ndarray]:
    """Stack observations into the network's input arrays.

    A stream absent from an observation, or present but not valid, is reported invalid with
    zero values (an ``optional=False`` stream that is absent is an error). Values are cast to
    the stream dtype; a shape that differs from the spec's ``obs_shape`` is an error.

    Args:
        observations: B observations.
        instructions: B instructions (one per observation).
        specs: the observation spec (the policy config's ``streams``).
        tokenizer: the policy's language tokenizer.

    Returns:
        name -> array, keys as :func:`input_names` lists them.
    """
    if len(observations) != len(instructions):
        raise ValueError(
            f"got {len(observations)} observations but {len(instructions)} instructions"
        )
    batch_size = len(observations)
    out: dict[str, np.ndarray] = {}
    out[INSTRUCTION_TOKENS], out[INSTRUCTION_MASK] = tokenizer.encode_batch(instructions)
    for s in specs:
        k_val, k_valid, k_age = stream_keys(s.name)
        values = np.zeros((batch_size, *s.obs_shape), dtype=s.dtype)
        valid = np.zeros(batch_size, dtype=bool)
        ages = np.zeros(batch_size, dtype=np.int64)
        for b, obs in enumerate(observations):
            if s.name not in obs.values:
                if not s.optional:
                    raise ConfigError(
                        f"observation {b} has no stream {s.name!r}, which the policy requires "
                        f"(optional=False); it has {sorted(obs.values)}"
                    )
                continue
            v = np.asarray(obs.values[s.name])
            if v.shape != s.obs_shape:
                raise ValueError(
                    f"stream {s.name!r} in observation {b} has shape {v.shape}, the policy expects "
                    f"{s.obs_shape} (shape {s.shape}, history {s.history}) as its config says"
                )
            if bool(obs.valid.get(s.name, False)):
                values[b] = v
                valid[b] = True
                ages[b] = int(obs.ages_ns.get(s.name, 0))
        out[k_val], out[k_valid], out[k_age] = values, valid, ages
    return out
