"""The :class:`Policy` interface served by the torch model and the ONNX Runtime model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from mmrobot.core.types import ActionChunk, Observation

__all__ = ["Policy"]


class Policy(ABC):
    """Maps an observation and a language instruction to an action chunk.

    A policy whose ``explains`` is True also takes ``act(..., explain=True)`` and then sets
    the chunk's :class:`~mmrobot.core.types.Attribution`.
    """

    explains: bool = False

    @abstractmethod
    def act(self, observation: Observation, instruction: str) -> ActionChunk:
        """Propose the next action chunk.

        Args:
            observation: every stream's value, age and validity at ``observation.t_ns``
                (as :meth:`mmrobot.sync.Synchronizer.observe` returns it).
            instruction: the task in natural language, e.g. ``"put the red cube in the bowl"``.

        Returns:
            An :class:`ActionChunk` of (H, D) float32 actions starting at ``observation.t_ns``.
        """

    def act_batch(
        self, observations: Sequence[Observation], instructions: Sequence[str]
    ) -> list[ActionChunk]:
        """One chunk per (observation, instruction) pair, as :meth:`act` gives it. A policy
        that runs a batch in one call (the torch and the ONNX policy) overrides this; the
        others are called once per pair. Only for policies without per-episode state."""
        if len(observations) != len(instructions):
            raise ValueError(
                f"act_batch: {len(observations)} observations but {len(instructions)} "
                "instructions; give one instruction per observation"
            )
        return [self.act(o, i) for o, i in zip(observations, instructions)]

    def reset(self) -> None:  # noqa: B027 - a no-op hook, overridden by stateful policies
        """Forget any per-episode state (called at the start of an episode)."""
