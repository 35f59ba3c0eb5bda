"""How an evaluation runs: the split names, the JSON format version and
:class:`EvalSettings` (one field per ``mmrobot eval`` flag)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from mmrobot.core.errors import ConfigError
from mmrobot.deploy.safety import SafetyConfig

__all__ = [
    "DEFAULT_SPLITS",
    "EVAL_FORMAT_VERSION",
    "INSTRUCTIONS_SPLIT",
    "MODALITY_SPLITS",
    "RANDOMIZED_SPLIT",
    "SPLIT_NAMES",
    "SWAP_SPLIT",
    "EvalSettings",
]

EVAL_FORMAT_VERSION = 2  # 2: safety layer on by default, per-reason safety events, swap split
#: Split name -> modality whose streams deliver nothing in that split.
MODALITY_SPLITS: dict[str, str] = {
    "no_camera": "camera",
    "no_lidar": "lidar",
    "no_force": "force",
    "no_joints": "joints",
}
INSTRUCTIONS_SPLIT = "instructions"
#: The grounding split: the task's scene, an instruction naming another block on the table.
SWAP_SPLIT = "instruction_swap"
#: Training phrasings in a scene with domain randomization on (colours, sizes, light, camera
#: poses, friction, masses, latency: :class:`~mmrobot.envs.randomization.Randomization`).
RANDOMIZED_SPLIT = "randomized"
DEFAULT_SPLITS: tuple[str, ...] = (
    "train",
    "heldout",
    SWAP_SPLIT,
    RANDOMIZED_SPLIT,
    *MODALITY_SPLITS,
)
SPLIT_NAMES: tuple[str, ...] = (*DEFAULT_SPLITS, INSTRUCTIONS_SPLIT)


@dataclass(frozen=True)
class EvalSettings:
    """How an evaluation runs (see ``mmrobot eval --help`` for each flag).

    Attributes:
        episodes: episodes per task (or instructions-file line) per split.
        seed: episode k uses reset seed ``seed + k``.
        max_steps: episode length limit (default: each task's).
        splits: splits to run, a subset of :data:`SPLIT_NAMES`.
        tasks: task specs (default: every task with random parameters).
        replan_every: control ticks between policy calls.
        ensemble_decay: temporal ensembling decay (None: newest chunk only).
        workers: worker processes (0: run in this process).
        start_method: ``"spawn"`` or ``"forkserver"``.
        video_dir: write videos here (None: no videos).
        video_format: ``"mp4"`` or ``"gif"``.
        video_episodes: videos for the first this many episodes of each task and split.
        device: torch device of the policy in each worker.
        safety: run through ``mmrobot run``'s controller and safety layer (False: the env
            applies the end-effector actions itself, for comparison).
        safety_limits: the layer's limits (default: a launch file's defaults).
        explain: record which inputs each decision attended to (a torch policy's
            ``act(..., explain=True)``) into each episode's ``attribution``, and draw it on
            the videos.
        lockstep: episodes each worker runs side by side, their policy calls batched into
            one (:func:`~mmrobot.train.eval.episode.run_lockstep`; a policy loaded from a
            path, no videos, no ``explain``; 1: one episode at a time). A batched forward
            may differ from a single one in the last bits, so an episode can end otherwise
            than with ``lockstep = 1``; the episodes themselves (tasks, seeds) are the same.
    """

    episodes: int = 10
    seed: int = 0
    max_steps: int | None = None
    splits: tuple[str, ...] = DEFAULT_SPLITS
    tasks: tuple[str, ...] | None = None
    replan_every: int = 1
    ensemble_decay: float | None = 0.1
    workers: int = 1
    start_method: str = "spawn"
    video_dir: str | None = None
    video_format: str = "mp4"
    video_episodes: int = 1
    device: str = "cpu"
    safety: bool = True
    safety_limits: SafetyConfig = SafetyConfig()
    explain: bool = False
    lockstep: int = 1

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ConfigError(f"episodes must be >= 1, got {self.episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"max_steps must be >= 1, got {self.max_steps}")
        if not self.splits:
            raise ConfigError(f"no splits given; valid splits: {list(SPLIT_NAMES)}")
        for s in self.splits:
            if s not in SPLIT_NAMES:
                raise ConfigError(f"unknown split {s!r}; valid splits: {list(SPLIT_NAMES)}")
        if len(set(self.splits)) != len(self.splits):
            raise ConfigError(f"splits listed twice: {list(self.splits)}")
        if self.replan_every < 1:
            raise ConfigError(f"replan_every must be >= 1, got {self.replan_every}")
        if self.ensemble_decay is not None and not (
            math.isfinite(self.ensemble_decay) and self.ensemble_decay >= 0
        ):
            raise ConfigError(f"ensemble_decay must be >= 0 or None, got {self.ensemble_decay}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.lockstep < 1:
            raise ConfigError(f"lockstep must be >= 1, got {self.lockstep}")
        if self.start_method not in ("spawn", "forkserver"):
            raise ConfigError(
                f"start_method must be 'spawn' or 'forkserver' (a GL context does not survive "
                f"fork), got {self.start_method!r}"
            )
        if self.video_format not in ("mp4", "gif"):
            raise ConfigError(f"video_format must be 'mp4' or 'gif', got {self.video_format!r}")
        if self.video_episodes < 0:
            raise ConfigError(f"video_episodes must be >= 0, got {self.video_episodes}")
