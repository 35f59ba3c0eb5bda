""":class:`TorchPolicy`: the :class:`~mmrobot.policies.base.Policy` interface over the torch network."""

from __future__ import annotations

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
        batch = collate([observation], [instruction], self.config.streams, self.model.tokenizer)
        attribution = None
        with torch.inference_mode():
            tb = batch_to_torch(batch, self.device)
            if explain:
                from mmrobot.policies.attribution import explain_generate

                tokens, logits, (attribution,) = explain_generate(self.model, tb)
            else:
                tokens, logits = self.model.generate(tb)
        tok = tokens[0].cpu().numpy().astype(np.int64)
        probs = torch.softmax(logits[0], dim=-1).amax(-1)
        return ActionChunk(
            t_ns=observation.t_ns,
            actions=self.action_tokenizer.decode_logits(
                logits[0].float().cpu().numpy(), self.config.action.decode
            ),
            period_ns=self.config.action.period_ns,
            tokens=tok,
            info={"mean_token_prob": float(probs.mean())},
            attribution=attribution,
        )

    def reset(self) -> None:
        """Stateless between calls; nothing to forget."""
