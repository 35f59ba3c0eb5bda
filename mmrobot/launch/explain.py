"""``mmrobot run --explain``: a policy adapter that asks for every decision's attribution.

The control loop calls ``act(observation, instruction)``; :class:`ExplainingPolicy` turns
that into ``act(..., explain=True)`` and keeps what it learns for the run's outputs: the
shares of every call (the instruction's ``attribution`` in the results JSON) and the latest
attribution with the camera images it was computed from (drawn beside the video frames).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import ActionChunk, Attribution, Observation
from mmrobot.train.eval.episode import AttributionTrace

__all__ = ["ExplainingPolicy"]


class ExplainingPolicy:
    """Wraps a policy whose ``explains`` is True; forwards every other attribute to it.

    Args:
        policy: a :class:`~mmrobot.policies.TorchPolicy` (or any policy that explains).
        period_ns: the control period: a call's tick is its observation time since
            :meth:`begin`, in periods.

    Raises:
        ConfigError: the policy cannot explain its decisions (an ONNX export).
    """

    def __init__(self, policy: Any, period_ns: int) -> None:
        if not getattr(policy, "explains", False):
            raise ConfigError(
                f"--explain needs a torch checkpoint ([policy] checkpoint = ...); "
                f"{type(policy).__name__} has no attribution (the ONNX export does not carry it)"
            )
        self.policy = policy
        self.period_ns = period_ns
        self.trace = AttributionTrace()
        self.latest: tuple[Attribution, dict[str, np.ndarray]] | None = None
        self._t0_ns = 0

    def begin(self, t_ns: int) -> None:
        """Start a new instruction at ``t_ns``: a fresh trace, nothing to draw yet."""
        self.trace = AttributionTrace()
        self.latest = None
        self._t0_ns = t_ns

    def act(self, observation: Observation, instruction: str) -> ActionChunk:
        chunk = self.policy.act(observation, instruction, explain=True)
        a = chunk.attribution
        if a is not None:
            self.trace.add(round((observation.t_ns - self._t0_ns) / self.period_ns), a)
            images = {
                c: observation.values[c] for c in a.camera_maps if observation.valid.get(c, False)
            }
            self.latest = (a, images)
        return chunk

    def reset(self) -> None:
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset()

    def __getattr__(self, name: str) -> Any:
        if name == "policy":  # not set yet: no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self.policy, name)
