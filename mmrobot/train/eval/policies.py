"""The policy an evaluation runs: loaded from a checkpoint or an ONNX export, its declared
observation spec, or the scripted expert behind the :class:`Policy` interface."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError, DependencyNotInstalled
from mmrobot.core.types import ActionChunk, Observation, StreamSpec
from mmrobot.policies.base import Policy

__all__ = [
    "PolicySource",
    "ScriptedExpertPolicy",
    "expert_policy_factory",
    "load_policy",
    "policy_stream_specs",
]

# A policy to evaluate: a checkpoint / ONNX path, the word "expert", a Policy object
# (in-process only), or a picklable callable env -> Policy.
PolicySource = str | Path | Policy | Callable[[Any], Policy]


def load_policy(path: str | Path, device: str = "cpu") -> Policy:
    """Load a policy from a torch checkpoint folder or an exported ONNX model.

    Args:
        path: a checkpoint folder (``config.json`` + ``model.safetensors``), or an ONNX
            export (``mmrobot export``): its folder, its ``policy.onnx`` or its ``policy.json``.
        device: torch device for checkpoints.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(
            f"policy {str(p)!r} not found; give a checkpoint folder (config.json + "
            "model.safetensors) or an exported ONNX model (.onnx file or its folder)"
        )
    if p.is_dir() and (p / "model.safetensors").is_file():
        from mmrobot.policies.torch_policy import TorchPolicy

        return TorchPolicy.from_checkpoint(p, device=device)
    onnx_dir = p.parent if p.is_file() and p.suffix in (".onnx", ".json") else p
    if p.suffix in (".onnx", ".json") or (
        p.is_dir() and ((p / "policy.json").is_file() or any(p.glob("*.onnx")))
    ):
        try:
            from mmrobot.deploy import OnnxPolicy
        except ImportError as e:
            raise DependencyNotInstalled(
                f"{str(p)!r} is an ONNX model, but mmrobot.deploy.OnnxPolicy cannot be imported "
                f"({e}); install onnxruntime (pip install onnxruntime) or evaluate the torch "
                "checkpoint folder instead"
            ) from e
        # the export folder holds policy.onnx and its sidecar policy.json
        return OnnxPolicy(p if p.suffix == ".json" else onnx_dir)
    raise ConfigError(
        f"{str(p)!r} is neither a checkpoint folder (config.json + model.safetensors) nor an "
        "ONNX export (a folder with policy.onnx + policy.json, from `mmrobot export`)"
    )


def policy_stream_specs(policy: Policy) -> tuple[StreamSpec, ...] | None:
    """The observation spec a policy declares (``policy.config.streams``), if any."""
    cfg = getattr(policy, "config", None)
    streams = getattr(cfg, "streams", None)
    if streams is None:
        streams = getattr(policy, "streams", None) or getattr(policy, "stream_specs", None)
    if streams is None:
        return None
    return tuple(streams)


class ScriptedExpertPolicy(Policy):
    """The env's scripted expert behind the :class:`Policy` interface (a privileged baseline).

    It reads the true scene state, not the observation, so it measures the evaluation
    harness and the task suite, not perception. Each call returns a one-step chunk.

    Args:
        env: the :class:`~mmrobot.envs.tabletop.TabletopEnv` being evaluated (or a wrapper),
            in either action mode: its end-effector actions reach a joint-target env
            through the same Cartesian controller (:class:`~mmrobot.deploy.safety.SimSafety`).
    """

    def __init__(self, env: Any) -> None:
        from mmrobot.envs.experts import ScriptedExpert

        self.env = env.unwrapped
        self.expert = ScriptedExpert(_EeDeltaView(self.env))
        self._episode_task: Any = None

    def reset(self) -> None:
        self._episode_task = None

    def act(self, observation: Observation, instruction: str) -> ActionChunk:
        if self._episode_task is not self.env.task:  # first call of an episode
            self.expert.reset()
            self._episode_task = self.env.task
        action = self.expert.act().astype(np.float32)[None]
        return ActionChunk(observation.t_ns, action, self.env.control_period_ns)


class _EeDeltaView:
    """The env as :class:`~mmrobot.envs.experts.ScriptedExpert` insists on seeing it (in
    ``ee_delta`` action mode). On the safety path the env takes joint targets, but the
    expert's actions reach it through the env's own Cartesian controller, whose target the
    expert tracks, so everything it reads (scene, task, controller target) is the same."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.config = replace(env.config, action_mode="ee_delta")

    @property
    def unwrapped(self) -> _EeDeltaView:
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


def expert_policy_factory(env: Any) -> Policy:
    """``env -> ScriptedExpertPolicy(env)``: the policy source behind ``--policy expert``."""
    return ScriptedExpertPolicy(env)
