""":class:`TorchPolicy`: the :class:`~mmrobot.policies.base.Policy` interface over the torch network."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mmrobot.core.types import ActionChunk, Observation
from mmrobot.policies.base import Policy
from mmrobot.policies.checkpoint import load_checkpoint
from mmrobot.policies.collate import collate
from mmrobot.policies.model import FusionPolicyModel, batch_to_torch
from mmrobot.policies.tokenizers import ActionTokenizer

__all__ = ["TorchPolicy"]


class TorchPolicy(Policy):
    """Runs a :class:`FusionPolicyModel` on one observation at a time (eval mode, no grad).

    Args:
        model: the network (put in eval mode here).
        device: torch device to run on.
    """

    explains = True

    def __init__(self, model: FusionPolicyModel, device: str | torch.device = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.config = model.config
        self.action_tokenizer = ActionTokenizer.from_config(self.config.action)

    @classmethod
    def from_checkpoint(
        cls, directory: str | Path, device: str | torch.device = "cpu"
    ) -> TorchPolicy:
        return cls(load_checkpoint(directory, device=device), device=device)

    def act(self, observation: Observation, instruction: str, explain: bool = False) -> ActionChunk:
        """Propose the next chunk (see :meth:`Policy.act`).

        With ``explain``, the chunk's ``attribution`` says which inputs its action tokens
        attended to (:mod:`mmrobot.policies.attribution`); the actions are the same.
        """
        if not explain:
            return self.act_batch([observation], [instruction])[0]
        from mmrobot.policies.attribution import explain_generate

        batch = collate([observation], [instruction], self.config.streams, self.model.tokenizer)
        with torch.inference_mode():
            tokens, logits, (attribution,) = explain_generate(
                self.model, batch_to_torch(batch, self.device)
            )
        return self._chunk(observation.t_ns, tokens[0], logits[0], attribution)

    def act_batch(
        self, observations: Sequence[Observation], instructions: Sequence[str]
    ) -> list[ActionChunk]:
        """One chunk per observation, in one forward pass of the batch."""
        if len(observations) != len(instructions):
            return super().act_batch(observations, instructions)  # its error
        batch = collate(observations, instructions, self.config.streams, self.model.tokenizer)
        with torch.inference_mode():
            tokens, logits = self.model.generate(batch_to_torch(batch, self.device))
        return [self._chunk(o.t_ns, tokens[k], logits[k], None) for k, o in enumerate(observations)]

    def _chunk(
        self, t_ns: int, tokens: torch.Tensor, logits: torch.Tensor, attribution: object
    ) -> ActionChunk:
        """The chunk of one row of a batch: (H, D) tokens and (H, D, bins) logits."""
        probs = torch.softmax(logits, dim=-1).amax(-1)
        return ActionChunk(
            t_ns=t_ns,
            actions=self.action_tokenizer.decode_logits(
                logits.float().cpu().numpy(), self.config.action.decode
            ),
            period_ns=self.config.action.period_ns,
            tokens=tokens.cpu().numpy().astype(np.int64),
            info={"mean_token_prob": float(probs.mean())},
            attribution=attribution,  # type: ignore[arg-type]
        )

    def reset(self) -> None:
        """Stateless between calls; nothing to forget."""
