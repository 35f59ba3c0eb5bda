"""The release config (``policies/release.toml``): its validated tables and file names.

See :mod:`mmrobot.train.release` for what a release runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mmrobot.core._toml import tomllib
from mmrobot.core.errors import ConfigError
from mmrobot.core.overrides import parse_override
from mmrobot.train.config import TrainConfig, load_train_config
from mmrobot.train.eval.settings import DEFAULT_SPLITS
from mmrobot.train.run_dir import METRICS as METRICS_FILE

__all__ = [
    "CARD_FILE",
    "CURVES_FILE",
    "METRICS_FILE",
    "RELEASE_FORMAT_VERSION",
    "STATE_FILE",
    "toy_policy_config",
    "DEFAULT_CONFIG",
    "EVAL_FILE",
    "RECORD_FILE",
    "TOY_OVERRIDES",
    "CollectSection",
    "EvaluateSection",
    "ReleaseConfig",
    "ReleaseSection",
    "TrainSection",
    "load_release_config",
]

RELEASE_FORMAT_VERSION = 1
DEFAULT_CONFIG = "policies/release.toml"
STATE_FILE = "release_state.json"
RECORD_FILE = "release.json"
EVAL_FILE = "eval.json"
CARD_FILE = "MODEL_CARD.md"
CURVES_FILE = "curves.png"
ONNX_PRECISIONS = ("fp32", "int8", "fp16")

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
    "train.perception_steps=2",
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
        perturb_rate, perturb_steps: random excursions the expert recovers from
            (:mod:`mmrobot.envs.perturb`; rate 0: off), in the training demonstrations only.
        grasp_miss: share of the grasping training demonstrations (pick, place, stack) whose
            first grasp is forced off along the fingers' axis, the expert then recovering
            (:class:`~mmrobot.envs.perturb.OffAxisGrasp`; 0: off).
        expert_turn: when the expert turns the tool to the block's faces: ``"start"`` (from
            the first tick), ``"over_block"`` or ``"descending"`` (once over the block;
            :data:`~mmrobot.envs.experts.TURNS`).
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
    perturb_rate: float = 0.0
    perturb_steps: int = 4
    grasp_miss: float = 0.0
    expert_turn: str = "start"
    randomize: bool = False
    heldout_episodes_per_task: int = 4
    heldout_seed: int = 20_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        limits = {
            "episodes_per_task": 1,
            "workers": 0,
            "seed": 0,
            "settle_steps": 0,
            "perturb_steps": 1,
        }
        _check_ints("collect", self, {**limits, "heldout_episodes_per_task": 1, "heldout_seed": 0})
        _check_strings("collect", self, "tasks")
        if not self.tasks:
            _fail("collect", "tasks", [], 'a non-empty list of task specs, e.g. ["reach", "pick"]')
        if not isinstance(self.randomize, bool):
            _fail("collect", "randomize", self.randomize, "true or false")
        from mmrobot.envs.experts import TURNS

        if self.expert_turn not in TURNS:
            _fail("collect", "expert_turn", self.expert_turn, f"one of {list(TURNS)}")
        for name in ("perturb_rate", "grasp_miss"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                _fail("collect", name, v, "a number in [0, 1] (0: off)")
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
    splits: tuple[str, ...] = DEFAULT_SPLITS
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
            bad = [s for s in v if s not in DEFAULT_SPLITS]
            if bad or len(set(v)) != len(v) or (name == "splits" and not v):
                _fail("evaluate", name, list(v), f"distinct splits from {list(DEFAULT_SPLITS)}")
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
        lexicon: give the released checkpoint a WordNet lexicon built from the training
            instructions (``mmrobot policy lexicon``), so that unseen words that mean
            training words are read as them. Needs WordNet 3.0 (``wordnet-base``).
    """

    out: str = "policies/release"
    work: str = "runs/release"
    version: str = "v1"
    budget_min: float = 150.0
    lexicon: bool = True

    def __post_init__(self) -> None:
        for name in ("out", "work", "version"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v:
                _fail("release", name, v, "a non-empty string")
        if not isinstance(self.lexicon, bool):
            _fail("release", "lexicon", self.lexicon, "true or false")
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
