"""Demonstration datasets: one chunked, compressed HDF5 file of expert episodes.

Layout (format version 2)::

    /                       attrs: format_version, stream_specs (JSON list of StreamSpec dicts),
                            action_low, action_high, control_hz, n_episodes,
                            aux_phases (JSON list: the names behind aux/phase)
    /episodes/<000000>/     attrs: instruction, task, seed, success, n_steps, split, reason,
                                   settle_steps
        actions             (T, 7) float32   action taken at step t
        rewards             (T,) float32     reward of that action (1 while the task is done)
        obs/t_ns            (T,) int64       observation times (simulation clock)
        obs/values/<name>   (T, *obs_shape)  observation the action was computed from
        obs/ages_ns/<name>  (T,) int64
        obs/valid/<name>    (T,) bool
        aux/block_rel       (T, 3) float32   privileged targets of the state observation t
        aux/goal_rel        (T, 3) float32   was taken in (training only; see
        aux/held            (T,) bool         mmrobot.envs.privileged)
        aux/phase           (T,) int64
        aux/tcp             (T, 3) float32
        aux/block_yaw       (T, 2) float32   (files written before it have none; a policy
                                             that trains a block_yaw head asks to re-collect)
        perturbed           (T,) bool        the executed action was not the label (only in
                                             perturbed demonstrations: collect --perturb,
                                             --grasp-miss)

Step t is one control tick: the observation, the simulator state it was taken in (``aux``)
and the action computed from it. A successful episode's last ``settle_steps`` steps come after
the success (the expert holding at the goal); ``n_steps - settle_steps - 1`` is the step whose
action completed the task. Episodes written by other tools may have no ``aux`` group
(:meth:`DemoDataset.aux` is then empty).

Version 2 added ``aux``, ``settle_steps`` and the ``ee_pose`` stream; version 1 files are
refused with a hint to re-collect. Images are chunked per 16 steps and gzip-compressed (with
byte shuffle); everything else is gzip-compressed in larger chunks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.core.deps import require
from mmrobot.core.errors import ConfigError, OutputExistsError
from mmrobot.core.types import Observation, StreamSpec
from mmrobot.envs.experts import check_turn
from mmrobot.envs.privileged import AUX_TARGETS, PHASES

__all__ = ["DATASET_FORMAT_VERSION", "DatasetWriter", "DemoDataset", "EpisodeRecord", "EpisodeInfo"]

DATASET_FORMAT_VERSION = 2


@dataclass
class EpisodeRecord:
    """One episode in memory, as a worker returns it.

    Attributes:
        values/ages_ns/valid: stream name -> (T, ...) arrays.
        actions: (T, 7) float32; rewards: (T,) float32.
        aux: privileged target name -> (T, ...) array (see
            :data:`~mmrobot.envs.privileged.AUX_TARGETS`); empty: none stored.
        settle_steps: how many of the last steps were recorded after the success.
    """

    task: str
    instruction: str
    seed: int
    success: bool
    split: str
    reason: str
    values: dict[str, np.ndarray]
    ages_ns: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    actions: np.ndarray
    rewards: np.ndarray
    t_ns: np.ndarray
    aux: dict[str, np.ndarray] = field(default_factory=dict)
    settle_steps: int = 0
    #: (T,) bool: the executed action was not the recorded label (a perturbed
    #: demonstration's excursion); None: every label was executed
    perturbed: np.ndarray | None = None

    @property
    def n_steps(self) -> int:
        return int(len(self.actions))


@dataclass(frozen=True)
class EpisodeInfo:
    """Metadata of one stored episode."""

    index: int
    task: str
    instruction: str
    seed: int
    success: bool
    n_steps: int
    split: str
    reason: str
    settle_steps: int = 0


class DatasetWriter:
    """Appends episodes to a new HDF5 dataset.

    Args:
        path: output file (must not exist unless ``overwrite``).
        specs: the stream specs of the observations.
        action_low, action_high: (7,) action bounds.
        control_hz: control rate of the episodes.
        expert_turn: when the labelling expert turns the tool
            (:data:`~mmrobot.envs.experts.TURNS`), so that DAgger labels the same way.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        specs: Sequence[StreamSpec],
        action_low: np.ndarray,
        action_high: np.ndarray,
        control_hz: float,
        overwrite: bool = False,
        expert_turn: str = "start",
    ) -> None:
        h5py = require("h5py", "demonstration datasets")
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise OutputExistsError(
                f"dataset {str(self.path)!r} exists; pass --overwrite to replace it or pick "
                "another --out path"
            )
        if not self.path.parent.exists():
            raise FileNotFoundError(
                f"folder {str(self.path.parent)!r} of the dataset does not exist"
            )
        self.specs = tuple(specs)
        self._f = h5py.File(self.path, "w")
        a = self._f.attrs
        a["format_version"] = DATASET_FORMAT_VERSION
        a["stream_specs"] = json.dumps([s.to_dict() for s in self.specs])
        a["action_low"] = np.asarray(action_low, dtype=np.float32)
        a["action_high"] = np.asarray(action_high, dtype=np.float32)
        a["control_hz"] = float(control_hz)
        a["n_episodes"] = 0
        a["aux_phases"] = json.dumps(list(PHASES))
        a["expert_turn"] = check_turn(expert_turn)
        self._eps = self._f.create_group("episodes")
        self.n_episodes = 0

    def append(self, ep: EpisodeRecord) -> int:
        """Write one episode; returns its index."""
        i = self.n_episodes
        g = self._eps.create_group(f"{i:06d}")
        for k in ("task", "instruction", "split", "reason"):
            g.attrs[k] = getattr(ep, k)
        g.attrs["seed"] = int(ep.seed)
        g.attrs["success"] = bool(ep.success)
        g.attrs["n_steps"] = ep.n_steps
        g.attrs["settle_steps"] = int(ep.settle_steps)
        T = max(1, ep.n_steps)
        g.create_dataset("actions", data=ep.actions.astype(np.float32), compression="gzip")
        g.create_dataset("rewards", data=ep.rewards.astype(np.float32), compression="gzip")
        g.create_dataset("obs/t_ns", data=ep.t_ns.astype(np.int64))
        for spec in self.specs:
            v = ep.values[spec.name]
            if spec.modality in ("camera", "depth"):
                chunks = (min(16, T), *v.shape[1:])
            else:
                chunks = (min(256, T), *v.shape[1:])
            g.create_dataset(
                f"obs/values/{spec.name}",
                data=v,
                chunks=chunks if ep.n_steps else None,
                compression="gzip",
                compression_opts=4,
                shuffle=True,
            )
            g.create_dataset(
                f"obs/ages_ns/{spec.name}", data=ep.ages_ns[spec.name].astype(np.int64)
            )
            g.create_dataset(f"obs/valid/{spec.name}", data=ep.valid[spec.name].astype(bool))
        for name, arr in ep.aux.items():
            if name not in AUX_TARGETS:
                raise ValueError(f"unknown aux target {name!r}; known: {list(AUX_TARGETS)}")
            shape, dtype = AUX_TARGETS[name]
            if arr.shape != (ep.n_steps, *shape):
                raise ValueError(
                    f"aux target {name!r} has shape {arr.shape}, expected {(ep.n_steps, *shape)}"
                )
            g.create_dataset(f"aux/{name}", data=arr.astype(dtype), compression="gzip")
        if ep.perturbed is not None:
            if ep.perturbed.shape != (ep.n_steps,):
                raise ValueError(
                    f"perturbed has shape {ep.perturbed.shape}, expected ({ep.n_steps},)"
                )
            g.create_dataset("perturbed", data=ep.perturbed.astype(bool))
        self.n_episodes += 1
        self._f.attrs["n_episodes"] = self.n_episodes
        return i

    def close(self) -> None:
        if self._f:
            self._f.close()
            self._f = None

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DemoDataset:
    """Random access to a demonstration dataset by episode and step.

    Args:
        path: an HDF5 file written by :class:`DatasetWriter`.

    The file is opened lazily (and reopened after pickling), so a dataset object can be
    handed to worker processes (e.g. a torch DataLoader).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"dataset {str(self.path)!r} does not exist")
        self._f: Any = None
        f = self._file()
        version = int(f.attrs.get("format_version", -1))
        if version != DATASET_FORMAT_VERSION:
            raise ConfigError(self._version_message(f, version))
        try:  # the header and the episode index; a damaged one is named, not a traceback
            self.specs: tuple[StreamSpec, ...] = tuple(
                StreamSpec.from_dict(d) for d in json.loads(f.attrs["stream_specs"])
            )
            self.action_low = np.asarray(f.attrs["action_low"])
            self.action_high = np.asarray(f.attrs["action_high"])
            self.control_hz = float(f.attrs["control_hz"])
            #: names of the ``aux/phase`` indices
            self.phases: tuple[str, ...] = tuple(json.loads(f.attrs.get("aux_phases", "[]")))
            #: when the labelling expert turns the tool (files before the option: "start")
            self.expert_turn = str(f.attrs.get("expert_turn", "start"))
            self._keys = sorted(f["episodes"].keys())
            self._steps = np.array(
                [int(f["episodes"][k].attrs["n_steps"]) for k in self._keys], dtype=np.int64
            )
        except (OSError, KeyError, json.JSONDecodeError) as e:
            raise ConfigError(
                f"dataset {str(self.path)!r}: its header or episode index cannot be read "
                f"({type(e).__name__}: {e}); the file is corrupt or not an mmrobot dataset: "
                "collect it again (mmrobot collect ... --overwrite)"
            ) from None
        self._offsets = np.concatenate([[0], np.cumsum(self._steps)])

    def _version_message(self, f: Any, version: int) -> str:
        msg = (
            f"dataset {str(self.path)!r} is format version {version}; this mmrobot reads "
            f"format {DATASET_FORMAT_VERSION}"
        )
        if version < DATASET_FORMAT_VERSION:
            eps = f.get("episodes")
            tasks = sorted({str(g.attrs["task"]).split()[0] for g in eps.values()}) if eps else []
            n = len(eps) if eps else 10
            task_arg = f"--tasks {' '.join(tasks)} " if tasks else ""
            msg += (
                " (format 2 adds the privileged auxiliary targets, the settle steps and the "
                "ee_pose stream). Re-collect it: "
                f"mmrobot collect {task_arg}--episodes {n} --out {self.path} --overwrite"
            )
        return msg

    def _file(self) -> Any:
        if self._f is None:
            h5py = require("h5py", "demonstration datasets")
            try:
                self._f = h5py.File(self.path, "r")
            except OSError as e:  # h5py says why: truncated, not HDF5 at all, ...
                raise ConfigError(
                    f"dataset {str(self.path)!r} is not a readable HDF5 file ({e}); it is "
                    "truncated or corrupt: collect it again (mmrobot collect ... --overwrite)"
                ) from None
        return self._f

    def unreadable(self, episode: int, error: Exception) -> ConfigError:
        """The error for an episode whose data cannot be read (a damaged chunk)."""
        return ConfigError(
            f"dataset {str(self.path)!r}: episode {episode} cannot be read ({error}); the file "
            "is corrupt: collect it again (mmrobot collect ... --overwrite)"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_f"] = None
        return state

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def __len__(self) -> int:
        """Number of episodes."""
        return len(self._keys)

    @property
    def n_steps(self) -> int:
        """Total steps over all episodes."""
        return int(self._offsets[-1])

    def locate(self, flat_index: int) -> tuple[int, int]:
        """(episode, step) of the ``flat_index``-th step of the whole dataset."""
        if not 0 <= flat_index < self.n_steps:
            raise IndexError(f"step {flat_index} out of range [0, {self.n_steps})")
        ep = int(np.searchsorted(self._offsets, flat_index, side="right") - 1)
        return ep, int(flat_index - self._offsets[ep])

    def _group(self, episode: int) -> Any:
        if not -len(self) <= episode < len(self):
            raise IndexError(f"episode {episode} out of range; the dataset has {len(self)}")
        return self._file()["episodes"][self._keys[episode]]

    def info(self, episode: int) -> EpisodeInfo:
        g = self._group(episode)
        a = g.attrs
        return EpisodeInfo(
            index=episode % len(self),
            task=str(a["task"]),
            instruction=str(a["instruction"]),
            seed=int(a["seed"]),
            success=bool(a["success"]),
            n_steps=int(a["n_steps"]),
            split=str(a["split"]),
            reason=str(a["reason"]),
            settle_steps=int(a.get("settle_steps", 0)),
        )

    def episodes(self) -> Iterator[EpisodeInfo]:
        for i in range(len(self)):
            yield self.info(i)

    def actions(self, episode: int) -> np.ndarray:
        """(T, 7) float32 actions of an episode."""
        return self._group(episode)["actions"][()]

    def perturbed(self, episode: int) -> np.ndarray:
        """(T,) bool: steps whose executed action was not the recorded label (all False for
        an unperturbed episode, or a file written before the flag existed)."""
        g = self._group(episode)
        if "perturbed" in g:
            return g["perturbed"][()].astype(bool)
        return np.zeros(int(g.attrs["n_steps"]), dtype=bool)

    def observation(self, episode: int, step: int) -> Observation:
        """The observation the action at ``step`` was computed from."""
        g = self._group(episode)
        n = int(g.attrs["n_steps"])
        if not -n <= step < n:
            raise IndexError(f"step {step} out of range; episode {episode} has {n} steps")
        step %= n
        obs = g["obs"]
        values = {s.name: obs["values"][s.name][step] for s in self.specs}
        ages = {s.name: int(obs["ages_ns"][s.name][step]) for s in self.specs}
        valid = {s.name: bool(obs["valid"][s.name][step]) for s in self.specs}
        t_ns = int(obs["t_ns"][step])
        return Observation(t_ns=t_ns, values=values, ages_ns=ages, valid=valid)

    def step(self, episode: int, step: int) -> tuple[Observation, np.ndarray]:
        """(observation, (7,) action) at one step."""
        return self.observation(episode, step), self._group(episode)["actions"][step]

    def aux(self, episode: int, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Privileged auxiliary targets of an episode: name -> (T, ...) array.

        Names, shapes and dtypes are :data:`~mmrobot.envs.privileged.AUX_TARGETS`
        (``block_rel`` (T, 3), ``goal_rel`` (T, 3), ``held`` (T,), ``phase`` (T,) indexing
        :attr:`phases`); empty when the episode has none. ``names``: read only these (those
        the episode has); None: all. Training only.
        """
        g = self._group(episode)
        if "aux" not in g:
            return {}
        wanted = g["aux"] if names is None else [n for n in dict.fromkeys(names) if n in g["aux"]]
        return {name: g["aux"][name][()] for name in wanted}

    def rewards(self, episode: int) -> np.ndarray:
        """(T,) float32 rewards of an episode."""
        return self._group(episode)["rewards"][()]

    def timing(
        self, episode: int
    ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """An episode's (T,) int64 observation times, and per stream its (T,) int64 sample
        ages and (T,) bool validity (the synchronizer's)."""
        obs = self._group(episode)["obs"]
        ages = {s.name: obs["ages_ns"][s.name][()] for s in self.specs}
        valid = {s.name: obs["valid"][s.name][()] for s in self.specs}
        return obs["t_ns"][()], ages, valid

    def stream(self, episode: int, name: str) -> np.ndarray:
        """(T, *obs_shape) values of one stream over an episode."""
        return self._group(episode)["obs"]["values"][name][()]


def summarize(ds: DemoDataset) -> Mapping[str, Any]:
    """Counts per task and the success rate (for ``mmrobot collect`` output)."""
    per: dict[str, list[int]] = {}
    for e in ds.episodes():
        t = e.task.split()[0]
        c = per.setdefault(t, [0, 0])
        c[0] += 1
        c[1] += int(e.success)
    return {"episodes": len(ds), "steps": ds.n_steps, "per_task": per}
