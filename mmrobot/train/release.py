"""``mmrobot release``: the released policy, reproduced from scratch by one command.

A release config (``policies/release.toml``) names everything; the stages run in order:

1. ``collect``: scripted-expert demonstrations (:func:`mmrobot.envs.collect.collect`) into
   ``<work>/demos.h5``;
2. ``heldout``: a few more episodes on other seeds into ``<work>/heldout.h5``, never trained
   on (the modality-reliance measurement uses them);
3. ``train``: :func:`mmrobot.train.trainer.train` in this process, with the DAgger rounds and
   the closed-loop evaluation during training of the train config, into ``<work>/train``;
4. ``checkpoint``: the trainer's chosen checkpoint (``best/`` when evaluation during
   training is on, else the last) copied into the release folder;
5. ``evaluate``: :func:`mmrobot.train.evaluate.evaluate` of the released checkpoint on the
   configured splits (safety layer on, as ``mmrobot run``);
6. ``onnx_fp32``, ``onnx_int8`` (as configured): :func:`mmrobot.deploy.export.export_onnx`,
   then the same evaluation of the exported model on ``onnx_splits``;
7. ``reliance``: :func:`mmrobot.train.reliance.modality_reliance` on the held-out slice;
8. ``report``: ``metrics.jsonl`` and ``curves.png`` (:func:`mmrobot.train.plot.plot_run`),
   ``eval.json`` (the torch evaluation as ``mmrobot eval --json`` writes it, the exports'
   evaluations under ``"exports"``).

Then ``release.json`` (the record: data, training, the wall time of every stage measured
with :func:`time.perf_counter`, load averages, the machine) and ``MODEL_CARD.md``, which
:func:`render_model_card` builds from ``eval.json``, ``metrics.jsonl`` and ``release.json``
alone, so every number in the card is one those files hold. :func:`check_model_card`
renders it again and checks ``eval.json``'s tables against its own episode list.

With ``resume`` a stage whose output is complete is skipped (its recorded time is kept);
once a stage runs, every later one runs too. ``toy`` is the end-to-end smoke test (two
episodes per task, a few steps, one DAgger round, a tiny network); it writes to a temporary
folder unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mmrobot.core._toml import tomllib
from mmrobot.core.errors import ConfigError, MmrobotError
from mmrobot.core.machine import load_average, machine
from mmrobot.core.overrides import parse_override
from mmrobot.train.config import TrainConfig, load_train_config

__all__ = [
    "DEFAULT_CONFIG",
    "TOY_OVERRIDES",
    "CollectSection",
    "EvaluateSection",
    "ModelCardMismatch",
    "ReleaseConfig",
    "ReleaseSection",
    "TrainSection",
    "check_model_card",
    "load_release_config",
    "render_model_card",
    "run_release",
]

RELEASE_FORMAT_VERSION = 1
DEFAULT_CONFIG = "policies/release.toml"
STATE_FILE = "release_state.json"
RECORD_FILE = "release.json"
EVAL_FILE = "eval.json"
CARD_FILE = "MODEL_CARD.md"
CURVES_FILE = "curves.png"
METRICS_FILE = "metrics.jsonl"
ONNX_PRECISIONS = ("fp32", "int8", "fp16")
_SPLITS = (
    "train",
    "heldout",
    "instruction_swap",
    "no_camera",
    "no_lidar",
    "no_force",
    "no_joints",
)  # evaluate.DEFAULT_SPLITS, without importing the evaluation module to read a config

#: What ``--toy`` changes (applied before the command line's own overrides): two episodes
#: per task of two short tasks, a few training steps, one DAgger round of two episodes, one
#: evaluation episode per task and split, 20 ticks each, everything in this process. The
#: network is shrunk too (:func:`toy_policy_config`).
TOY_OVERRIDES: tuple[str, ...] = (
    'collect.tasks=["reach", "pick"]',
    "collect.episodes_per_task=2",
    "collect.workers=0",
    "collect.settle_steps=2",
    "collect.heldout_episodes_per_task=1",
    "train.steps=4",
    "train.threads=1",
    "train.compile=false",
    "train.batch_size=4",
    "train.warmup_steps=1",
    "train.log_every=1",
    "train.save_every=1000",
    "train.dagger.rounds=1",
    "train.dagger.episodes=2",
    "train.dagger.steps=2",
    "train.dagger.workers=0",
    "train.eval.every=1000",
    "train.eval.episodes=1",
    "train.eval.workers=0",
    "evaluate.episodes=1",
    "evaluate.workers=0",
    "evaluate.max_steps=20",
    'evaluate.onnx_splits=["train"]',
    "evaluate.reliance_samples=16",
)
TOY_IMAGE_SIZE = 32


# --------------------------------------------------------------------------- config


def _fail(section: str, name: str, value: object, expected: str) -> None:
    raise ConfigError(f"release config: {section}.{name} = {value!r}; expected {expected}")


def _is_int(v: object, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


def _check_ints(section: str, obj: object, limits: Mapping[str, int]) -> None:
    for name, lo in limits.items():
        v = getattr(obj, name)
        if not _is_int(v, lo):
            _fail(section, name, v, f"an int >= {lo}")


def _check_strings(section: str, obj: object, name: str) -> None:
    v = getattr(obj, name)
    if not all(isinstance(x, str) for x in v):
        _fail(section, name, list(v), "a list of strings")


@dataclass(frozen=True)
class CollectSection:
    """The ``[collect]`` table: the demonstrations and the held-out slice.

    Attributes:
        tasks: task specs the episodes cycle over (``mmrobot collect --list-tasks``).
        episodes_per_task: successful expert episodes per task to train on.
        workers: collection processes (0: this process).
        seed: seed of the first episode; episode k uses ``seed + k``.
        settle_steps: steps recorded after each success, the expert holding at the goal.
        randomize: domain randomization on.
        heldout_episodes_per_task: episodes per task on other seeds, never trained on
            (modality reliance is measured on them).
        heldout_seed: seed of the first held-out episode.
    """

    tasks: tuple[str, ...] = ("reach", "push", "pick", "place", "stack")
    episodes_per_task: int = 60
    workers: int = 2
    seed: int = 10_000
    settle_steps: int = 10
    randomize: bool = False
    heldout_episodes_per_task: int = 4
    heldout_seed: int = 20_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        limits = {"episodes_per_task": 1, "workers": 0, "seed": 0, "settle_steps": 0}
        _check_ints("collect", self, {**limits, "heldout_episodes_per_task": 1, "heldout_seed": 0})
        _check_strings("collect", self, "tasks")
        if not self.tasks:
            _fail("collect", "tasks", [], 'a non-empty list of task specs, e.g. ["reach", "pick"]')
        if not isinstance(self.randomize, bool):
            _fail("collect", "randomize", self.randomize, "true or false")
        from mmrobot.envs.tasks import TaskSpec

        for t in self.tasks:
            try:
                TaskSpec.parse(t)
            except ConfigError as e:
                raise ConfigError(f"release config: collect.tasks: {e}") from e

    @property
    def episodes(self) -> int:
        return self.episodes_per_task * len(self.tasks)

    @property
    def heldout_episodes(self) -> int:
        return self.heldout_episodes_per_task * len(self.tasks)


@dataclass(frozen=True)
class TrainSection:
    """The ``[train]`` table: which training config, and what to change in it.

    Attributes:
        config: a train config file (``[train]``, ``[dagger]``, ``[eval]`` tables), relative
            to the release config's folder.
        overrides: ``key=value`` changes to it, as ``mmrobot train`` takes them
            (``"steps=4000"``, ``"dagger.rounds=2"``). ``dataset`` and ``out`` are the
            release's own and may not be set.
    """

    config: str = "train_default.toml"
    overrides: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "overrides", tuple(self.overrides))
        if not isinstance(self.config, str) or not self.config:
            _fail("train", "config", self.config, "a train config path (train_default.toml)")
        _check_strings("train", self, "overrides")
        for item in self.overrides:
            key = item.partition("=")[0].strip()
            if key in ("dataset", "out"):
                raise ConfigError(
                    f"release config: train.overrides sets {key!r}; the release trains on its "
                    "own dataset into its own work folder (set [release] work instead)"
                )


@dataclass(frozen=True)
class EvaluateSection:
    """The ``[evaluate]`` table: the evaluation the model card reports.

    Attributes:
        episodes: episodes per task per split.
        splits: evaluation splits (``mmrobot eval --help``).
        tasks: task specs (empty: the collected tasks).
        workers: evaluation processes (0: this process).
        seed: episode k of every task and split is reset with ``seed + k``.
        max_steps: episode length limit (0: each task's own).
        onnx: ONNX precisions to export and evaluate in the same run (``fp32``, ``int8``,
            ``fp16``; empty: none).
        onnx_splits: the splits the exports are evaluated on.
        reliance_samples: samples of the held-out slice for the modality-reliance table.
    """

    episodes: int = 20
    splits: tuple[str, ...] = _SPLITS
    tasks: tuple[str, ...] = ()
    workers: int = 2
    seed: int = 0
    max_steps: int = 0
    onnx: tuple[str, ...] = ("fp32", "int8")
    onnx_splits: tuple[str, ...] = ("train",)
    reliance_samples: int = 192

    def __post_init__(self) -> None:
        for name in ("splits", "tasks", "onnx", "onnx_splits"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
            _check_strings("evaluate", self, name)
        _check_ints(
            "evaluate",
            self,
            {"episodes": 1, "workers": 0, "seed": 0, "max_steps": 0, "reliance_samples": 1},
        )
        for name in ("splits", "onnx_splits"):
            v = getattr(self, name)
            bad = [s for s in v if s not in _SPLITS]
            if bad or len(set(v)) != len(v) or (name == "splits" and not v):
                _fail("evaluate", name, list(v), f"distinct splits from {list(_SPLITS)}")
        bad = [p for p in self.onnx if p not in ONNX_PRECISIONS]
        if bad or len(set(self.onnx)) != len(self.onnx):
            _fail("evaluate", "onnx", list(self.onnx), f"distinct items of {list(ONNX_PRECISIONS)}")
        if self.onnx and not self.onnx_splits:
            _fail("evaluate", "onnx_splits", [], "at least one split when onnx is set")
        if not set(self.onnx_splits) <= set(self.splits):
            _fail(
                "evaluate",
                "onnx_splits",
                list(self.onnx_splits),
                f"splits that torch is evaluated on too (evaluate.splits = {list(self.splits)})",
            )
        from mmrobot.envs.tasks import TaskSpec

        for t in self.tasks:
            try:
                TaskSpec.parse(t)
            except ConfigError as e:
                raise ConfigError(f"release config: evaluate.tasks: {e}") from e


@dataclass(frozen=True)
class ReleaseSection:
    """The ``[release]`` table: where things go.

    Attributes:
        out: the release folder (checkpoint, eval.json, metrics.jsonl, curves.png,
            release.json, MODEL_CARD.md), relative to the working directory.
        work: the work folder (datasets, the training run, ONNX exports), likewise.
        version: the release's name in the model card.
        budget_min: the time budget the card compares the measured wall time with.
    """

    out: str = "policies/release"
    work: str = "runs/release"
    version: str = "v1"
    budget_min: float = 150.0

    def __post_init__(self) -> None:
        for name in ("out", "work", "version"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                _fail("release", name, v, "a non-empty string")
        b = self.budget_min
        if isinstance(b, bool) or not isinstance(b, (int, float)) or b <= 0:
            _fail("release", "budget_min", b, "a number of minutes > 0")


_SECTIONS: dict[str, type] = {
    "collect": CollectSection,
    "train": TrainSection,
    "evaluate": EvaluateSection,
    "release": ReleaseSection,
}


@dataclass(frozen=True)
class ReleaseConfig:
    """A validated release config (see ``policies/release.toml``)."""

    collect: CollectSection = dataclasses.field(default_factory=CollectSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    evaluate: EvaluateSection = dataclasses.field(default_factory=EvaluateSection)
    release: ReleaseSection = dataclasses.field(default_factory=ReleaseSection)
    # Where the file was read from; train.config resolves against it.
    base_dir: str = "."

    def train_config_path(self) -> Path:
        p = Path(self.train.config)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def train_config(self) -> TrainConfig:
        """The train config with the release's overrides applied (dataset and out unset)."""
        path = self.train_config_path()
        try:
            return load_train_config(path).with_overrides(list(self.train.overrides))
        except ConfigError as e:
            raise ConfigError(f"release config [train] (config {str(path)!r}): {e}") from e

    @property
    def eval_tasks(self) -> tuple[str, ...]:
        return self.evaluate.tasks or self.collect.tasks

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("base_dir")
        return {
            k: {n: list(v) if isinstance(v, tuple) else v for n, v in t.items()}
            for k, t in d.items()
        }

    def with_overrides(self, overrides: Sequence[str]) -> ReleaseConfig:
        """Apply ``section.key=value`` strings (``collect.episodes_per_task=4``). A
        ``train.KEY=VALUE`` whose key is not one of ``[train]``'s (``config``,
        ``overrides``) is a change to the train config (``train.steps=100``,
        ``train.dagger.rounds=1``) and is appended to ``train.overrides``."""
        changes: dict[str, dict[str, Any]] = {k: {} for k in _SECTIONS}
        train_extra: list[str] = []
        for item in overrides:
            key, value = parse_override(item, example="collect.episodes_per_task=4")
            section, dot, sub = key.partition(".")
            if not dot or section not in _SECTIONS:
                raise ConfigError(
                    f"override {item!r}: expected SECTION.KEY=VALUE with SECTION one of "
                    f"{list(_SECTIONS)} (e.g. collect.episodes_per_task=4, train.steps=100)"
                )
            names = {f.name for f in fields(_SECTIONS[section])}
            if section == "train" and sub not in names:
                train_extra.append(f"{sub}={item.partition('=')[2]}")
                continue
            if sub not in names:
                raise ConfigError(
                    f"override {item!r}: {section}.{sub} is not one of "
                    f"{sorted(f'{section}.{n}' for n in names)}"
                )
            current = getattr(getattr(self, section), sub)
            if isinstance(current, float) and isinstance(value, int):
                value = float(value)
            changes[section][sub] = value
        if train_extra:
            # a later value of a key replaces the earlier one (keeps the list readable)
            base = [*changes["train"].get("overrides", self.train.overrides), *train_extra]
            last = {item.partition("=")[0].strip(): i for i, item in enumerate(base)}
            changes["train"]["overrides"] = tuple(
                item for i, item in enumerate(base) if last[item.partition("=")[0].strip()] == i
            )
        new = dataclasses.replace(
            self,
            **{
                name: dataclasses.replace(getattr(self, name), **c)
                for name, c in changes.items()
                if c
            },
        )
        new.validate()
        return new

    def validate(self) -> None:
        """Cross-table checks: the train config loads, and no two sets of episodes share a
        seed (a scene trained on, or used to pick the checkpoint, must not be evaluated)."""
        tc = self.train_config()
        c, e = self.collect, self.evaluate
        # collect tries at most 2 * episodes + 10 seeds (CollectConfig.max_attempts)
        ranges = {
            "collect (demonstrations)": (c.seed, c.seed + 2 * c.episodes + 10),
            "collect (held-out slice)": (
                c.heldout_seed,
                c.heldout_seed + 2 * c.heldout_episodes + 10,
            ),
            "evaluate": (e.seed, e.seed + e.episodes),
        }
        if tc.eval.every:
            ranges["evaluation during training (train eval.seed)"] = (
                tc.eval.seed,
                tc.eval.seed + tc.eval.episodes,
            )
        d = tc.dagger
        for r in range(1, d.rounds + 1):  # the trainer's seeds of round r
            lo = d.seed + r * 100_000
            ranges[f"DAgger round {r} (train dagger.seed)"] = (lo, lo + d.episodes)
        items = sorted(ranges.items(), key=lambda kv: kv[1])
        for (a, (alo, ahi)), (b, (blo, bhi)) in zip(items, items[1:]):
            if blo < ahi:
                raise ConfigError(
                    f"release config: the seeds of {a} [{alo}, {ahi}) and of {b} [{blo}, {bhi}) "
                    "overlap; move one of the seeds so that no scene is both trained on "
                    "(or used to choose the checkpoint) and evaluated"
                )


def load_release_config(path: str | Path) -> ReleaseConfig:
    """Read a release config: ``[collect]``, ``[train]``, ``[evaluate]``, ``[release]``
    tables, each optional; unknown tables and keys are errors that name them."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"release config {str(path)!r} not found (the project's is {DEFAULT_CONFIG})"
        )
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    unknown = sorted(set(doc) - set(_SECTIONS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown table(s) {unknown}; a release config has {list(_SECTIONS)}"
        )
    kwargs: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = doc.get(name, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: {name} must be a table ([{name}])")
        names = {f.name for f in fields(cls)}
        bad = sorted(set(table) - names)
        if bad:
            raise ConfigError(
                f"{path} [{name}]: unknown key(s) {bad}; expected some of {sorted(names)}"
            )
        try:
            kwargs[name] = cls(**table)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
    config = ReleaseConfig(**kwargs, base_dir=str(path.parent))
    try:
        config.validate()
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
    return config


def toy_policy_config(base: Any, image_size: int = TOY_IMAGE_SIZE) -> Any:
    """A tiny network with ``base``'s streams (cameras at ``image_size``), for ``--toy``."""
    p = base
    streams = tuple(
        dataclasses.replace(s, shape=(image_size, image_size, *s.shape[2:]))
        if s.modality == "camera"
        else s
        for s in p.streams
    )
    return p.replace(
        streams=streams,
        model=dataclasses.replace(p.model, width=32, depth=1, heads=2, early_tokens=4),
        camera=dataclasses.replace(p.camera, stem_channels=(8,), grid=2),
        vector=dataclasses.replace(p.vector, hidden=32),
        action=dataclasses.replace(p.action, horizon=4, bins=32, edges=None, binning="uniform"),
    )


# --------------------------------------------------------------------------- the run


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, doc: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(path)


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _source() -> dict[str, Any]:
    """The git commit of the working directory and whether it had uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


@dataclass(frozen=True)
class _Stage:
    name: str
    title: str
    run: Callable[[], dict[str, Any]]
    done: Callable[[], bool]


class _ReleaseRun:
    """One invocation of the release: the stages, the state file, the console."""

    def __init__(
        self,
        config: ReleaseConfig,
        out: Path,
        work: Path,
        toy: bool,
        resume: bool,
        progress: bool,
        command: str,
    ) -> None:
        from rich.console import Console

        self.config = config
        self.out = out
        self.work = work
        self.toy = toy
        self.resume = resume
        self.progress = progress
        self.console = Console(highlight=False)
        if not self.console.is_terminal:  # a log file: do not wrap tables at 80 columns
            self.console = Console(highlight=False, width=160)
        self._ran: list[str] = []  # stages run (not skipped) in this invocation
        self.state_path = work / STATE_FILE
        self.train_config = config.train_config().replace(
            dataset=str((work / "demos.h5").resolve()), out=str((work / "train").resolve())
        )
        from mmrobot.policies import load_policy_config

        policy = load_policy_config(self.train_config.path("policy"))
        self.policy_config = toy_policy_config(policy) if toy else None
        cams = [s for s in (self.policy_config or policy).streams if s.modality == "camera"]
        if cams and cams[0].shape[0] != cams[0].shape[1]:
            raise ConfigError(
                f"camera stream {cams[0].name!r} is {cams[0].shape[:2]}; the simulated cameras "
                "are square (set its shape to [N, N, 3] in the policy config)"
            )
        self.image_size = int(cams[0].shape[0]) if cams else 96
        config_doc = {"release": config.to_dict(), "toy": toy, "image_size": self.image_size}
        digest = hashlib.sha256(json.dumps(config_doc, sort_keys=True).encode()).hexdigest()
        self.state = self._load_state(config_doc, digest) if resume else None
        if self.state is None:
            self.state = {
                "format_version": RELEASE_FORMAT_VERSION,
                "config_digest": digest,
                "config": config_doc,
                "command": command,
                "started": _now(),
                "stages": {},
            }
        self.state["command"] = command
        self.state["invocations"] = self.state.get("invocations", 0) + 1
        self.state["train_config"] = json.loads(json.dumps(dataclasses.asdict(self.train_config)))

    def _load_state(self, config_doc: dict[str, Any], digest: str) -> dict[str, Any] | None:
        if not self.state_path.is_file():
            self.console.print(f"no release state in {self.work}; starting from the beginning")
            return None
        state = json.loads(self.state_path.read_text(encoding="utf-8"))
        if state.get("config_digest") != digest:
            old, new = _flat(state.get("config", {})), _flat(config_doc)
            diff = [
                f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            ]
            raise ConfigError(
                f"--resume: {self.work} holds a release run of another config ("
                + "; ".join(diff[:6])
                + "); run without --resume to start over, or with that config"
            )
        return state

    def _save_state(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        _write_json(self.state_path, self.state)

    # ------------------------------------------------------------------ stages
    def stages(self) -> list[_Stage]:
        w, o = self.work, self.out
        st = self.state
        out = [
            _Stage(
                "collect",
                "collect demonstrations",
                self._collect,
                lambda: (w / "demos.h5").is_file(),
            ),
            _Stage(
                "heldout",
                "collect the held-out slice",
                self._heldout,
                lambda: (w / "heldout.h5").is_file(),
            ),
            _Stage(
                "train",
                "train (behaviour cloning, DAgger, evaluation during training)",
                self._train,
                lambda: Path(st.get("training", {}).get("checkpoint", "/nonexistent")).is_dir(),
            ),
            _Stage(
                "checkpoint",
                "copy the chosen checkpoint into the release folder",
                self._checkpoint,
                lambda: (o / "config.json").is_file() and (o / "model.safetensors").is_file(),
            ),
            _Stage(
                "evaluate",
                "evaluate the checkpoint",
                self._evaluate,
                lambda: (w / "eval_torch.json").is_file(),
            ),
        ]
        for p in self.config.evaluate.onnx:
            out.append(
                _Stage(
                    f"onnx_{p}",
                    f"export to ONNX ({p}) and evaluate the export",
                    lambda p=p: self._onnx(p),
                    lambda p=p: (w / f"eval_onnx_{p}.json").is_file(),
                )
            )
        out += [
            _Stage(
                "reliance",
                "modality reliance on the held-out slice",
                self._reliance,
                lambda: "reliance" in st,
            ),
            _Stage(
                "report",
                "metrics, curves and eval.json",
                self._report,
                lambda: all((o / f).is_file() for f in (EVAL_FILE, METRICS_FILE, CURVES_FILE)),
            ),
        ]
        return out

    def run(self) -> Path:
        stages = self.stages()
        self.work.mkdir(parents=True, exist_ok=True)
        self.out.mkdir(parents=True, exist_ok=True)
        rerun = not self.resume
        for i, stage in enumerate(stages, 1):
            self.console.rule(f"[bold]release {i}/{len(stages)}: {stage.title}")
            done = stage.name in self.state["stages"] and stage.done()
            if not rerun and done:
                rec = self.state["stages"][stage.name]
                self.console.print(f"skipped: done in an earlier run ({rec['seconds']:.1f} s)")
                continue
            rerun = True
            self.state["stages"].pop(stage.name, None)
            load0, started, t0 = load_average(), _now(), time.perf_counter()
            record = stage.run()
            seconds = time.perf_counter() - t0
            self.state.update(record)
            self.state["stages"][stage.name] = {
                "seconds": seconds,
                "started": started,
                "load_average_start": load0,
                "load_average_end": load_average(),
                "invocation": self.state["invocations"],
            }
            self._save_state()
            self._ran.append(stage.name)
            self.console.print(f"[green]{stage.name} done[/green] in {seconds:.1f} s")
        return self._finish([s.name for s in stages])

    def _collect_into(self, name: str, episodes: int, seed: int) -> dict[str, Any]:
        from mmrobot.envs.collect import CollectConfig, collect
        from mmrobot.envs.dataset import DemoDataset

        c = self.config.collect
        path = self.work / name
        cfg = CollectConfig(
            tasks=c.tasks,
            episodes=episodes,
            out=str(path),
            workers=c.workers,
            seed=seed,
            image_size=self.image_size,
            randomize=c.randomize,
            settle_steps=c.settle_steps,
            overwrite=True,
        )
        summary = collect(cfg, progress=self.progress)
        if summary["episodes"] < episodes:
            raise MmrobotError(
                f"collect: only {summary['episodes']} of {episodes} expert episodes succeeded in "
                f"{summary['attempts']} attempts ({summary['per_task']}); check the experts with "
                "`mmrobot collect --report`"
            )
        ds = DemoDataset(path)
        infos = list(ds.episodes())
        per_task: dict[str, int] = {}
        for info in infos:
            per_task[info.task.split()[0]] = per_task.get(info.task.split()[0], 0) + 1
        seeds = [info.seed for info in infos]
        doc = {
            "path": str(path),
            "episodes": len(infos),
            "samples": ds.n_steps,
            "per_task": per_task,
            "attempts": summary["attempts"],
            "expert": {
                t: {"attempts": n, "successes": k} for t, (n, k) in summary["per_task"].items()
            },
            "seeds": [min(seeds), max(seeds)],
            "image_size": self.image_size,
            "bytes": path.stat().st_size,
        }
        ds.close()
        self.console.print(
            f"{doc['episodes']} episodes, {doc['samples']:,} samples, {per_task} "
            f"({doc['attempts']} attempts) -> {path}"
        )
        return doc

    def _collect(self) -> dict[str, Any]:
        c = self.config.collect
        return {"data": self._collect_into("demos.h5", c.episodes, c.seed)}

    def _heldout(self) -> dict[str, Any]:
        c = self.config.collect
        return {"heldout": self._collect_into("heldout.h5", c.heldout_episodes, c.heldout_seed)}

    def _train(self) -> dict[str, Any]:
        from mmrobot.policies.checkpoint import read_checkpoint_config
        from mmrobot.train.trainer import train

        tc = self.train_config
        # The trainer resumes its own run only when the data it trained on is unchanged.
        resume = self.resume and not self._ran
        if not resume:
            shutil.rmtree(tc.out, ignore_errors=True)  # the release's own run folder
        result = train(tc, resume=resume, progress=self.progress, policy_config=self.policy_config)
        _, meta = read_checkpoint_config(result.checkpoint)
        return {
            "training": {
                "checkpoint": str(result.checkpoint),
                "selected": "best" if result.checkpoint.name == "best" else "last",
                "checkpoint_step": meta.get("step"),
                "checkpoint_success": meta.get("success"),
                "steps": result.steps,
                "dagger_rounds": tc.dagger.rounds,
                "final_loss": result.final_loss,
                "final_token_accuracy": result.final_token_accuracy,
                "wall_s": result.wall_s,
            }
        }

    def _checkpoint(self) -> dict[str, Any]:
        from mmrobot.policies import load_checkpoint

        src = Path(self.state["training"]["checkpoint"])
        for f in sorted(src.iterdir()):
            if f.is_file():
                tmp = self.out / (f.name + ".tmp")
                shutil.copyfile(f, tmp)
                tmp.replace(self.out / f.name)
        model = load_checkpoint(self.out)
        cfg = model.config
        doc = {
            "parameters": model.num_parameters(),
            "weights_bytes": (self.out / "model.safetensors").stat().st_size,
            "fusion": cfg.model.fusion,
            "decoding": cfg.model.decoding,
            "width": cfg.model.width,
            "depth": cfg.model.depth,
            "heads": cfg.model.heads,
            "streams": [f"{s.name} {'x'.join(map(str, s.shape))}" for s in cfg.streams],
            "horizon": cfg.action.horizon,
            "bins": cfg.action.bins,
            "aux_heads": sorted(n for n, w in cfg.training.aux_weights.items() if w > 0),
        }
        self.console.print(
            f"{src} -> {self.out}: {doc['parameters']:,} parameters, "
            f"{doc['weights_bytes'] / 1e6:.1f} MB"
        )
        return {"policy": doc}

    def _settings(self, splits: Sequence[str]) -> Any:
        from mmrobot.train.evaluate import EvalSettings

        e = self.config.evaluate
        return EvalSettings(
            episodes=e.episodes,
            seed=e.seed,
            max_steps=e.max_steps or None,
            splits=tuple(splits),
            tasks=self.config.eval_tasks,
            workers=e.workers,
        )

    def _run_eval(self, source: Path, splits: Sequence[str], path: Path) -> dict[str, Any]:
        from mmrobot.train.evaluate import evaluate

        result = evaluate(str(source), self._settings(splits), progress=self.progress)
        for table in result.tables()[:1]:
            self.console.print(table)
        result.write_json(path)
        if result.errors:
            e = result.errors[0]
            self.console.print(
                f"[yellow]warning[/yellow]: {len(result.errors)} episodes crashed (counted as "
                f"failures); first: [{e.split} {e.task} seed {e.seed}] {e.error}"
            )
        return {"seconds": result.seconds, "errors": len(result.errors)}

    def _evaluate(self) -> dict[str, Any]:
        rec = self._run_eval(self.out, self.config.evaluate.splits, self.work / "eval_torch.json")
        return {"evaluations": {**self.state.get("evaluations", {}), "torch": rec}}

    def _onnx(self, precision: str) -> dict[str, Any]:
        from mmrobot.deploy.export import export_onnx

        folder = self.work / "exports" / precision
        sidecar = export_onnx(self.out, folder, quantize=None if precision == "fp32" else precision)
        self.console.print(f"exported {folder} ({sidecar.model_bytes / 1e6:.1f} MB)")
        rec = self._run_eval(
            folder, self.config.evaluate.onnx_splits, self.work / f"eval_onnx_{precision}.json"
        )
        rec["model_bytes"] = sidecar.model_bytes
        return {"evaluations": {**self.state.get("evaluations", {}), f"onnx_{precision}": rec}}

    def _reliance(self) -> dict[str, Any]:
        from mmrobot.train.reliance import modality_reliance

        doc = modality_reliance(
            self.out, self.work / "heldout.h5", samples=self.config.evaluate.reliance_samples
        )
        doc["checkpoint"] = str(self.out)
        for label, r in doc["results"].items():
            self.console.print(
                f"{label:24s} loss {r['loss']:.3f}  accuracy {r['token_accuracy']:.3f}"
            )
        return {"reliance": doc}

    def _report(self) -> dict[str, Any]:
        from mmrobot.train.plot import plot_run

        shutil.copyfile(Path(self.train_config.out) / METRICS_FILE, self.out / METRICS_FILE)
        plot_run(self.out, self.out / CURVES_FILE)
        doc = json.loads((self.work / "eval_torch.json").read_text(encoding="utf-8"))
        doc["exports"] = {
            f"onnx_{p}": json.loads((self.work / f"eval_onnx_{p}.json").read_text(encoding="utf-8"))
            for p in self.config.evaluate.onnx
        }
        _write_json(self.out / EVAL_FILE, doc)
        return {}

    def _finish(self, order: list[str]) -> Path:
        from rich.table import Table

        st = self.state
        stages = [{"name": n, **st["stages"][n]} for n in order]
        record = {
            "format_version": RELEASE_FORMAT_VERSION,
            "version": self.config.release.version,
            "toy": self.toy,
            "command": st["command"],
            "config": st["config"],
            "train_config": st["train_config"],
            "mmrobot_version": _mmrobot_version(),
            "source": _source(),
            "started": st["started"],
            "finished": _now(),
            "machine": machine(),
            "data": st["data"],
            "heldout": st["heldout"],
            "training": st["training"],
            "policy": st["policy"],
            "evaluations": st["evaluations"],
            "reliance": st["reliance"],
            "stages": stages,
            "total_s": sum(s["seconds"] for s in stages),
            "budget_min": self.config.release.budget_min,
        }
        _write_json(self.out / RECORD_FILE, record)
        (self.out / CARD_FILE).write_text(render_model_card(self.out), encoding="utf-8")
        check_model_card(self.out)
        self.console.rule(f"release {record['version']}{' (toy)' if self.toy else ''} done")
        t = Table(title="wall time")
        t.add_column("stage")
        t.add_column("seconds", justify="right")
        for s in stages:
            t.add_row(s["name"], f"{s['seconds']:.1f}")
        t.add_row("total", f"{record['total_s']:.1f}", end_section=True)
        self.console.print(t)
        self.console.print(f"wrote {self.out / CARD_FILE} and the files it quotes")
        return self.out


def _mmrobot_version() -> str:
    import mmrobot

    return mmrobot.__version__


def run_release(
    config: ReleaseConfig,
    *,
    out: str | Path | None = None,
    work: str | Path | None = None,
    toy: bool = False,
    resume: bool = False,
    progress: bool = True,
    command: str | None = None,
) -> Path:
    """Run every stage of the release (see the module docstring); returns the release folder.

    Args:
        config: the release config; with ``toy``, :data:`TOY_OVERRIDES` should already be
            applied (``mmrobot release --toy`` does) and the network is shrunk here.
        out: the release folder (default: ``config.release.out``; with ``toy``, a new
            temporary folder).
        work: the work folder (default: ``config.release.work``; with ``toy``, ``out/work``).
        toy: the end-to-end smoke test at toy size.
        resume: skip the stages whose output in ``work``/``out`` is complete.
        progress: progress bars.
        command: the command line the model card quotes.
    """
    if out is None:
        out = tempfile.mkdtemp(prefix="mmrobot-release-toy-") if toy else config.release.out
    out = Path(out)
    if work is None:
        work = out / "work" if toy else Path(config.release.work)
    run = _ReleaseRun(
        config,
        out,
        Path(work),
        toy,
        resume,
        progress,
        command or f"mmrobot release{' --toy' if toy else ''}",
    )
    return run.run()


# --------------------------------------------------------------------------- the model card


class ModelCardMismatch(MmrobotError, ValueError):
    """MODEL_CARD.md does not say what eval.json, metrics.jsonl and release.json hold."""


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def _cell(r: Mapping[str, Any]) -> str:
    """``7/10, 70 % [40–89]`` from an eval.json results entry."""
    if not r["episodes"]:
        return "-"
    lo, hi = r["ci95"]
    return f"{r['successes']}/{r['episodes']}, {_pct(r['rate'])} [{100 * lo:.0f}–{100 * hi:.0f}]"


def _table(name: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A markdown table between markers that :func:`check_model_card` finds it by."""
    lines = [f"<!-- table: {name} -->", "| " + " | ".join(header) + " |"]
    lines.append("| " + " | ".join("---" for _ in header) + " |")
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    lines.append("<!-- /table -->")
    return "\n".join(lines)


def _eval_tables(doc: Mapping[str, Any]) -> list[str]:
    splits, tasks = doc["splits"], doc["tasks"]
    res, safety = doc["results"], doc["safety"]
    rows = [
        [f"**{k}**" if k == "all" else k, *(_cell(res[s][k]) for s in splits)]
        for k in (*tasks, "all")
    ]
    out = [_table("eval-success", ["task", *splits], rows)]
    rows = [
        [
            f"**{k}**" if k == "all" else k,
            *(
                f"{safety[s][k]['events_per_episode']:.1f} / "
                f"{safety[s][k]['held_ticks_per_episode']:.1f}"
                for s in splits
            ),
        ]
        for k in (*tasks, "all")
    ]
    out.append(_table("eval-safety", ["task", *splits], rows))
    reasons: dict[str, int] = {}
    for s in splits:
        for r, n in safety[s]["all"]["by_reason"].items():
            reasons[r] = reasons.get(r, 0) + n
    order = sorted(reasons, key=lambda r: (-reasons[r], r))
    rows = [[r, *(str(safety[s]["all"]["by_reason"].get(r, 0)) for s in splits)] for r in order]
    if not rows:
        rows = [["(none)", *("0" for _ in splits)]]
    out.append(_table("eval-safety-reasons", ["reason", *splits], rows))
    return out


def _onnx_table(doc: Mapping[str, Any]) -> str | None:
    exports = doc.get("exports") or {}
    if not exports:
        return None
    header = ["split", "task", "torch"]
    for name in exports:
        header += [name.replace("_", " "), "vs torch (points)"]
    rows = []
    for s in next(iter(exports.values()))["splits"]:
        for k in (*doc["tasks"], "all"):
            torch_r = doc["results"][s][k]
            row = [s, f"**{k}**" if k == "all" else k, _cell(torch_r)]
            for e in exports.values():
                r = e["results"][s][k]
                diff = (
                    "-"
                    if r["rate"] is None or torch_r["rate"] is None
                    else f"{100 * (r['rate'] - torch_r['rate']):+.0f}"
                )
                row += [_cell(r), diff]
            rows.append(row)
    return _table("eval-onnx", header, rows)


def _read_metrics(release_dir: Path) -> list[dict[str, Any]]:
    rows = []
    for line in (release_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _minutes(s: float) -> str:
    return f"{s / 60:.1f}"


def _load(x: Sequence[float] | None) -> str:
    return "-" if not x else f"{x[0]:.2f}"


def render_model_card(release_dir: str | Path) -> str:
    """MODEL_CARD.md from ``eval.json``, ``metrics.jsonl`` and ``release.json`` alone."""
    d = Path(release_dir)
    ev = json.loads((d / EVAL_FILE).read_text(encoding="utf-8"))
    rec = json.loads((d / RECORD_FILE).read_text(encoding="utf-8"))
    metrics = _read_metrics(d)
    train_rows = [r for r in metrics if r.get("kind") == "train"]
    eval_rows = [r for r in metrics if r.get("kind") == "eval"]
    dagger_rows = [r for r in metrics if r.get("kind") == "dagger"]
    cfg = rec["config"]["release"]
    tc = rec["train_config"]
    data, held, tr, pol = rec["data"], rec["heldout"], rec["training"], rec["policy"]
    settings = ev["settings"]
    toy = rec["toy"]
    src = rec["source"]
    commit = (
        "unknown commit"
        if not src.get("commit")
        else f"commit {src['commit'][:12]}" + (" with uncommitted changes" if src["dirty"] else "")
    )
    p: list[str] = []
    title = f"mmrobot released policy {rec['version']}"
    if toy:
        title = "mmrobot release: toy run (a smoke test of the release command, not a policy)"
    p.append(f"# {title}\n")
    p.append(
        "<!-- Generated by `mmrobot release` from eval.json, metrics.jsonl and release.json in "
        "this folder; `mmrobot release --check DIR` verifies that it still matches them. -->\n"
    )
    p.append(
        f"Reproduce it from scratch with `{rec['command']}` (mmrobot {rec['mmrobot_version']}, "
        f"{commit}). Every figure below was measured by that command and is read from the "
        "files next to this card: `eval.json` (evaluation), `metrics.jsonl` (training log, "
        "drawn in `curves.png`) and `release.json` (data, timing, machine).\n"
    )
    # summary
    res = ev["results"]
    summary = [
        [f"success, {s} (all tasks)", _cell(res[s]["all"])]
        for s in ev["splits"]
        if s in ("train", "heldout", "instruction_swap")
    ]
    summary += [
        [
            "wall time (all stages)",
            f"{_minutes(rec['total_s'])} min (budget {rec['budget_min']:g} min)",
        ],
        [
            "checkpoint",
            f"{pol['parameters']:,} parameters, {pol['weights_bytes'] / 1e6:.1f} MB",
        ],
    ]
    p.append("## Summary\n")
    p.append(_table("summary", ["", ""], summary) + "\n")
    # model
    p.append("## Model\n")
    p.append(
        f"{pol['fusion']} fusion, {pol['decoding']} decoding, width {pol['width']}, "
        f"depth {pol['depth']}, {pol['heads']} attention heads; inputs: "
        + ", ".join(f"`{s}`" for s in pol["streams"])
        + f"; {pol['horizon']} x 7 action tokens, {pol['bins']} bins per dimension"
        + (f"; training-only heads: {', '.join(pol['aux_heads'])}" if pol["aux_heads"] else "")
        + f". Policy config `{tc['policy']}`"
        + (" shrunk to a toy network" if toy else "")
        + "; `config.json` holds all of it, `model.safetensors` the weights.\n"
    )
    # data
    c = cfg["collect"]
    p.append("## Data\n")
    rows = [
        [
            name,
            str(x["episodes"]),
            f"{x['samples']:,}",
            f"{x['seeds'][0]}–{x['seeds'][1]}",
            ", ".join(f"{t} {n}" for t, n in x["per_task"].items()),
            str(x["attempts"]),
        ]
        for name, x in (("demonstrations (trained on)", data), ("held-out slice", held))
    ]
    p.append(
        _table("data", ["set", "episodes", "samples", "seeds", "per task", "expert attempts"], rows)
        + "\n"
    )
    p.append(
        f"Scripted-expert episodes of the tasks {', '.join(f'`{t}`' for t in c['tasks'])}, "
        f"{data['image_size']} px cameras, {c['settle_steps']} settle steps after each success, "
        f"domain randomization {'on' if c['randomize'] else 'off'}, training phrasings; only "
        "successful episodes are kept.\n"
    )
    # training
    p.append("## Training\n")
    ov = cfg["train"]["overrides"]
    p.append(
        f"Train config `{cfg['train']['config']}`"
        + (f" with {', '.join(f'`{o}`' for o in ov)}" if ov else "")
        + f": {tr['steps']:,} steps in all ({tc['steps']:,} of behaviour cloning"
        + (
            f", then {tr['dagger_rounds']} DAgger round(s) of {tc['dagger']['steps']:,} steps "
            f"each, {tc['dagger']['episodes']} rollouts per round, beta {tc['dagger']['beta']:g} "
            f"decaying by {tc['dagger']['beta_decay']:g} per round"
            if tr["dagger_rounds"]
            else ", no DAgger"
        )
        + f"), batch {tc['batch_size']}, AdamW lr {tc['lr']:g}, precision {tc['precision']}, "
        f"seed {tc['seed']}.\n"
    )
    if dagger_rows:
        rows = [
            [
                str(r["round"]),
                f"{r['beta']:.2f}",
                str(r.get("episodes", "-")),
                f"{r.get('steps', 0):,}",
                _pct(r.get("success_rate")),
                f"{r.get('seconds', 0):.0f}",
            ]
            for r in dagger_rows
        ]
        header = ["round", "beta", "episodes", "labelled states", "policy success", "seconds"]
        p.append(_table("dagger", header, rows) + "\n")
    if eval_rows:
        rows = [
            [str(r["step"]), _pct(r["success"]), str(r["episodes_per_task"]), f"{r['seconds']:.0f}"]
            for r in eval_rows
        ]
        p.append("Closed-loop success during training (train phrasings, safety layer on):\n")
        p.append(
            _table("train-eval", ["step", "success", "episodes per task", "seconds"], rows) + "\n"
        )
    chosen = (
        f"the best by closed-loop success during training (step {tr['checkpoint_step']}, "
        f"{_pct(tr['checkpoint_success'])})"
        if tr["selected"] == "best"
        else f"the last (step {tr['checkpoint_step']})"
    )
    last = train_rows[-1] if train_rows else {}
    p.append(
        f"Released checkpoint: {chosen}. Last training loss {last.get('loss', float('nan')):.3f}"
        f" (action-token cross-entropy), token accuracy "
        f"{last.get('token_accuracy', float('nan')):.3f}.\n"
    )
    p.append(f"![loss, accuracy and success curves]({CURVES_FILE})\n")
    # timing
    p.append("## Wall time\n")
    rows = [
        [
            s["name"],
            f"{s['seconds']:.1f}",
            _minutes(s["seconds"]),
            f"{_load(s['load_average_start'])} → {_load(s['load_average_end'])}",
        ]
        for s in rec["stages"]
    ]
    rows.append(["**total**", f"{rec['total_s']:.1f}", _minutes(rec["total_s"]), ""])
    p.append(
        _table("timing", ["stage", "seconds", "minutes", "load average (1 min), start → end"], rows)
        + "\n"
    )
    within = rec["total_s"] <= 60 * rec["budget_min"]
    dag_s = sum(r.get("seconds", 0) for r in dagger_rows)
    ev_s = sum(r.get("seconds", 0) for r in eval_rows)
    m = rec["machine"]
    p.append(
        f"Total {_minutes(rec['total_s'])} min, {'within' if within else 'over'} the budget of "
        f"{rec['budget_min']:g} min (the sum of the stages, each timed with "
        f"`time.perf_counter`). Of the training stage, DAgger collection took {dag_s:.0f} s "
        f"and evaluation during training {ev_s:.0f} s. "
        + (
            f"The stages ran in {runs} invocations (`--resume`); the total is the sum of their "
            "times. "
            if (runs := len({s["invocation"] for s in rec["stages"]})) > 1
            else ""
        )
        + f"Machine: {m['cpu']}, {m['cores_available']} cores available, Python "
        f"{m['python']}, {m['platform']}; started {rec['started']}, finished "
        f"{rec['finished']}.\n"
    )
    # evaluation
    p.append("## Evaluation\n")
    p.append(
        f"`mmrobot eval` in the same run: {settings['episodes']} episode(s) per task per split, "
        f"episode k reset with seed {settings['seed']} + k (never a training seed), "
        + (
            f"at most {settings['max_steps']} ticks, "
            if settings["max_steps"]
            else "each task's time limit, "
        )
        + f"safety layer {'on' if settings['safety'] else 'OFF'} as in `mmrobot run`, temporal "
        f"ensembling decay {settings['ensemble_decay']}, a new chunk every "
        f"{settings['replan_every']} tick(s). Success: successes/episodes, rate "
        f"[95 % Wilson interval].\n"
    )
    succ, safe, reasons = _eval_tables(ev)
    p.append(succ + "\n")
    if ev["errors"]:
        p.append(f"{ev['errors']} episode(s) crashed and count as failures (see eval.json).\n")
    p.append(
        "Safety layer per episode (mean): events (every clamp or hold, one per joint or axis "
        "and tick) / ticks held:\n"
    )
    p.append(safe + "\n")
    p.append("Safety events by reason (total over all episodes):\n")
    p.append(reasons + "\n")
    onnx = _onnx_table(ev)
    if onnx:
        p.append("### ONNX exports\n")
        p.append(
            "The checkpoint exported with `mmrobot export` and evaluated through ONNX Runtime "
            "on the same episodes; the difference to torch is in percentage points:\n"
        )
        p.append(onnx + "\n")
    # reliance
    rel = rec["reliance"]
    results = rel["results"]
    base = results["all inputs"]["loss"]
    rows = [
        [label, f"{r['loss']:.3f}", f"{r['loss'] - base:+.3f}", f"{r['token_accuracy']:.3f}"]
        for label, r in results.items()
    ]
    p.append("## Modality reliance\n")
    p.append(
        f"Action-token loss on {rel['samples']} samples of the held-out slice "
        f"({rel['episodes']} episodes never trained on), with one input removed at a time "
        "(the stream marked invalid, as a missing sensor is) or the instructions shuffled "
        "across the batch (`mmrobot.train.reliance`, also "
        "`benchmarks/modality_reliance.py`). An input whose removal barely raises the loss is "
        "one the policy does not use.\n"
    )
    p.append(_table("reliance", ["input", "loss", "vs all inputs", "token accuracy"], rows) + "\n")
    return "\n".join(p)


def _tables(text: str) -> dict[str, list[str]]:
    """Marked tables of a card: name -> its lines."""
    out: dict[str, list[str]] = {}
    name: str | None = None
    for line in text.splitlines():
        if line.startswith("<!-- table: ") and line.endswith(" -->"):
            name = line[len("<!-- table: ") : -len(" -->")]
            out[name] = []
        elif line == "<!-- /table -->":
            name = None
        elif name is not None:
            out[name].append(line)
    return out


def _eval_consistency(name: str, doc: Mapping[str, Any]) -> list[str]:
    """Problems where an evaluation's tables disagree with its own episode list."""
    from mmrobot.train.evaluate import wilson_interval

    problems = []
    eps = doc.get("episodes", [])
    for s in doc["splits"]:
        for k in (*doc["tasks"], "all"):
            mine = [e for e in eps if e["split"] == s and (k == "all" or e["key"] == k)]
            n, ok = len(mine), sum(bool(e["success"]) for e in mine)
            r = doc["results"][s][k]
            lo, hi = wilson_interval(ok, n)
            rate = ok / n if n else None
            same = (
                r["episodes"] == n
                and r["successes"] == ok
                and (r["rate"] is None) == (rate is None)
                and (rate is None or abs(r["rate"] - rate) < 1e-9)
                and abs(r["ci95"][0] - lo) < 1e-9
                and abs(r["ci95"][1] - hi) < 1e-9
            )
            if not same:
                problems.append(
                    f"eval.json {name}: results[{s}][{k}] says {r['successes']}/{r['episodes']} "
                    f"(rate {r['rate']}, ci95 {r['ci95']}); its episodes give {ok}/{n}"
                )
            sf = doc["safety"][s][k]
            events = sum(sum(e["safety_events"].values()) for e in mine)
            held = sum(e["holds"] for e in mine)
            if sf["events"] != events or sf["held_ticks"] != held:
                problems.append(
                    f"eval.json {name}: safety[{s}][{k}] says {sf['events']} events, "
                    f"{sf['held_ticks']} held ticks; its episodes give {events}, {held}"
                )
    return problems


def check_model_card(release_dir: str | Path) -> None:
    """Check that MODEL_CARD.md says what the files next to it hold.

    Each evaluation in ``eval.json`` (torch and every export) is checked against its own
    episode list (successes, Wilson intervals, safety counts, per split and task), and the
    card is rendered again from ``eval.json``, ``metrics.jsonl`` and ``release.json`` and
    compared with the one on disk, table by table, then line by line.

    Raises:
        ModelCardMismatch: what differs, by file, table, row.
        FileNotFoundError: a file is missing.
    """
    d = Path(release_dir)
    for f in (CARD_FILE, EVAL_FILE, RECORD_FILE, METRICS_FILE):
        if not (d / f).is_file():
            raise FileNotFoundError(f"{d / f} not found; is {str(d)!r} a release folder?")
    ev = json.loads((d / EVAL_FILE).read_text(encoding="utf-8"))
    problems = _eval_consistency("torch", ev)
    for name, doc in (ev.get("exports") or {}).items():
        problems += _eval_consistency(name, doc)
    card = (d / CARD_FILE).read_text(encoding="utf-8")
    expected = render_model_card(d)
    have, want = _tables(card), _tables(expected)
    for name, rows in want.items():
        if name not in have:
            problems.append(f"{CARD_FILE}: table {name!r} is missing")
            continue
        for i in range(max(len(rows), len(have[name]))):
            a = have[name][i] if i < len(have[name]) else "(no row)"
            b = rows[i] if i < len(rows) else "(no row)"
            if a != b:
                problems.append(
                    f"{CARD_FILE} table {name!r}, line {i + 1}: card {a!r}, files {b!r}"
                )
    for name in sorted(set(have) - set(want)):
        problems.append(f"{CARD_FILE}: table {name!r} is not one the files give")
    if not problems and card != expected:
        for i, (a, b) in enumerate(zip(card.splitlines(), expected.splitlines()), 1):
            if a != b:
                problems.append(f"{CARD_FILE} line {i}: card {a!r}, files {b!r}")
                break
        else:
            problems.append(f"{CARD_FILE}: its length differs from the card the files give")
    if problems:
        raise ModelCardMismatch(
            f"{d / CARD_FILE} does not match the files next to it:\n  " + "\n  ".join(problems)
        )
