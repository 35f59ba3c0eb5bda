"""The policy's chunks, combined for each control tick by a :class:`TemporalEnsembler` (used by
:mod:`mmrobot.deploy.loop`; where the policy runs is :mod:`mmrobot.deploy.workers`)."""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol

import numpy as np

from mmrobot.core.types import ActionChunk, Observation

__all__ = ["PolicyLike", "TemporalEnsembler"]


class PolicyLike(Protocol):
    def act(self, observation: Observation, instruction: str) -> ActionChunk: ...


class TemporalEnsembler:
    """Combines the actions that overlapping chunks propose for the same time.

    Args:
        decay: weight ``exp(-decay * k)`` for the k-th oldest chunk covering the time;
            None: the newest chunk alone.
        max_chunks: how many recent chunks to keep.
    """

    def __init__(self, decay: float | None = 0.1, max_chunks: int = 16) -> None:
        self.decay = decay
        self._chunks: deque[ActionChunk] = deque(maxlen=max_chunks)

    def reset(self) -> None:
        self._chunks.clear()

    def add(self, chunk: ActionChunk) -> None:
        self._chunks.append(chunk)

    @property
    def newest(self) -> ActionChunk | None:
        """The chunk added last (the newest observation), or None."""
        return self._chunks[-1] if self._chunks else None

    def action_at(self, t_ns: int) -> np.ndarray | None:
        """The ensembled action at ``t_ns``, or None when no chunk covers it."""
        proposals = []
        for chunk in self._chunks:
            x = (t_ns - chunk.t_ns) / chunk.period_ns
            if x < 0 or x > chunk.horizon - 1:
                continue
            i = int(math.floor(x))
            j = min(i + 1, chunk.horizon - 1)
            w = x - i
            proposals.append((1 - w) * chunk.actions[i] + w * chunk.actions[j])
        if not proposals:
            return None
        if self.decay is None:
            return np.asarray(proposals[-1], np.float64)
        weights = np.exp(-self.decay * np.arange(len(proposals)))
        return np.average(np.stack(proposals), axis=0, weights=weights)
