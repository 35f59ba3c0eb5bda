"""Training samples from a demonstration dataset: (observation, instruction, action chunk).

Sample ``(episode, t)`` pairs the observation the expert acted on at step ``t`` with its
actions at ``t .. t + H - 1``. Past the end of the episode the chunk continues with a
"hold" action (no motion, the last gripper command), which is what the robot should do once
the task is done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Observation, StreamSpec
from mmrobot.envs.dataset import DemoDataset

__all__ = ["ChunkSamples", "hold_action", "action_chunk"]


def hold_action(last_action: np.ndarray) -> np.ndarray:
    """Zero end-effector motion with the gripper command of ``last_action`` (7,)."""
    out = np.zeros_like(last_action)
    out[-1] = last_action[-1]
    return out


def action_chunk(actions: np.ndarray, t: int, horizon: int) -> np.ndarray:
    """(H, D) actions from step ``t`` of an episode's (T, D) actions, padded with holds."""
    chunk = actions[t : t + horizon]
    if len(chunk) < horizon:
        pad = np.repeat(hold_action(actions[-1])[None], horizon - len(chunk), axis=0)
        chunk = np.concatenate([chunk, pad], axis=0)
    return chunk


@dataclass
class _Episode:
    instruction: str
    task: str
    values: dict[str, np.ndarray]
    ages_ns: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    actions: np.ndarray


class ChunkSamples:
    """Random access to training samples of a :class:`DemoDataset`.

    Args:
        demos: the dataset.
        specs: the policy's observation spec; every stream must be in the dataset with the
            same shape and dtype.
        horizon: action chunk length H.
        episodes: which episodes to use (default: all successful ones).
        in_memory: read everything once (fast sampling) instead of per sample from HDF5.
    """

    def __init__(
        self,
        demos: DemoDataset,
        specs: Sequence[StreamSpec],
        horizon: int,
        episodes: Sequence[int] | None = None,
        in_memory: bool = True,
    ) -> None:
        self.demos = demos
        self.specs = tuple(specs)
        self.horizon = horizon
        have = {s.name: s for s in demos.specs}
        for s in self.specs:
            d = have.get(s.name)
            if d is None:
                raise ConfigError(
                    f"dataset {str(demos.path)!r} has no stream {s.name!r} that the policy needs; "
                    f"it has {sorted(have)}"
                )
            if d.obs_shape != s.obs_shape or d.dtype != s.dtype:
                raise ConfigError(
                    f"stream {s.name!r}: dataset has {d.obs_shape} {d.dtype}, the policy expects "
                    f"{s.obs_shape} {s.dtype}; collect again or change the policy config"
                )
        if episodes is None:
            episodes = [e.index for e in demos.episodes() if e.success]
        self.episodes = list(episodes)
        if not self.episodes:
            raise ConfigError(f"dataset {str(demos.path)!r} has no successful episodes to train on")
        lengths = np.array([demos.info(e).n_steps for e in self.episodes], dtype=np.int64)
        self._offsets = np.concatenate([[0], np.cumsum(lengths)])
        self._cache: dict[int, _Episode] = {}
        self.in_memory = in_memory
        if in_memory:
            for e in self.episodes:
                self._cache[e] = self._read(e)

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def _read(self, episode: int) -> _Episode:
        info = self.demos.info(episode)
        g = self.demos._group(episode)
        obs = g["obs"]
        names = [s.name for s in self.specs]
        return _Episode(
            instruction=info.instruction,
            task=info.task,
            values={n: obs["values"][n][()] for n in names},
            ages_ns={n: obs["ages_ns"][n][()] for n in names},
            valid={n: obs["valid"][n][()] for n in names},
            actions=g["actions"][()],
        )

    def _episode(self, episode: int) -> _Episode:
        ep = self._cache.get(episode)
        return ep if ep is not None else self._read(episode)

    def locate(self, index: int) -> tuple[int, int]:
        """(episode, step) of sample ``index``."""
        k = int(np.searchsorted(self._offsets, index, side="right") - 1)
        return self.episodes[k], int(index - self._offsets[k])

    def sample(self, index: int) -> tuple[Observation, str, np.ndarray]:
        """(observation, instruction, (H, D) float32 action chunk) of sample ``index``."""
        episode, t = self.locate(index)
        ep = self._episode(episode)
        obs = Observation(
            t_ns=t,
            values={n: v[t] for n, v in ep.values.items()},
            ages_ns={n: int(a[t]) for n, a in ep.ages_ns.items()},
            valid={n: bool(v[t]) for n, v in ep.valid.items()},
        )
        return obs, ep.instruction, action_chunk(ep.actions, t, self.horizon).astype(np.float32)

    def all_actions(self) -> np.ndarray:
        """(N, D) every action of the used episodes (for quantile bins)."""
        return np.concatenate([self._episode(e).actions for e in self.episodes])

    def stream_values(self, name: str, max_samples: int = 20000) -> np.ndarray:
        """Valid values of one stream (up to ``max_samples`` steps; for normalization)."""
        chunks, n = [], 0
        for e in self.episodes:
            ep = self._episode(e)
            v = ep.values[name][ep.valid[name]]
            chunks.append(v)
            n += len(v)
            if n >= max_samples:
                break
        return np.concatenate(chunks) if chunks else np.zeros((0,))
