"""Where the control loop's actions come from: the policy's chunks, requested inline or from
a :class:`PolicyWorker` thread, and combined for each tick by a :class:`TemporalEnsembler`
(split from :mod:`mmrobot.deploy.loop`, which uses both)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Protocol

import numpy as np

from mmrobot.core.types import ActionChunk, Observation

__all__ = ["PolicyLike", "PolicyWorker", "TemporalEnsembler"]


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


class PolicyWorker:
    """Runs ``policy.act`` in its own thread; the control tick hands it the newest
    observation and never waits for it.

    Only the newest request is kept: one that arrives while another is still waiting to
    start replaces it (counted by :meth:`submit`'s return value). ONNX Runtime and torch
    release the GIL while they compute, so the tick thread keeps running.

    Args:
        policy: anything with ``act(observation, instruction) -> ActionChunk``.
    """

    def __init__(self, policy: PolicyLike, name: str = "mmrobot-policy") -> None:
        self.policy = policy
        self._cv = threading.Condition()
        self._request: tuple[int, Observation, str] | None = None
        self._done: list[tuple[int, ActionChunk | BaseException, int]] = []
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, generation: int, observation: Observation, instruction: str) -> bool:
        """Ask for a chunk; True when this replaced a request that had not started yet."""
        with self._cv:
            replaced = self._request is not None
            self._request = (generation, observation, instruction)
            self._cv.notify_all()
        return replaced

    def poll(self) -> list[tuple[int, ActionChunk | BaseException, int]]:
        """Finished requests since the last poll: (generation, chunk or the exception the
        policy raised, latency in ns)."""
        with self._cv:
            out, self._done = self._done, []
        return out

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until no request is pending or running (tests, shutdown); False on timeout."""
        with self._cv:
            return self._cv.wait_for(
                lambda: self._request is None and not self._busy, timeout=timeout_s
            )

    def close(self, timeout_s: float = 1.0) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=timeout_s)

    def _serve(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._request is not None or self._closed)
                if self._closed:
                    return
                generation, obs, instruction = self._request  # type: ignore[misc]
                self._request, self._busy = None, True
            t0 = time.perf_counter_ns()
            try:
                result: ActionChunk | BaseException = self.policy.act(obs, instruction)
            except BaseException as e:  # handed to the loop thread, which raises it
                result = e
            with self._cv:
                self._done.append((generation, result, time.perf_counter_ns() - t0))
                self._busy = False
                self._cv.notify_all()
