"""Training configuration: a validated TOML file (``policies/train_default.toml``).

Unknown keys are errors, every value is range-checked, and messages name the file and key.
Any key can be overridden on the command line as ``key=value`` (``steps=200``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mmrobot.core._toml import tomllib
from mmrobot.core.errors import ConfigError
from mmrobot.core.overrides import parse_override

__all__ = [
    "STAGES",
    "DaggerConfig",
    "EvalConfig",
    "LogConfig",
    "TrainConfig",
    "load_train_config",
]

#: What a training step trains, in the order a run goes through them (``TrainConfig.stage``):
#: the camera turn head alone, the camera heads alone, then the whole policy.
STAGES = ("turn", "camera", "policy")


def _check(section: str, obj: object, name: str, ok: bool, expected: str) -> None:
    if not ok:
        raise ConfigError(
            f"train config: {section}{name} = {getattr(obj, name)!r}; expected {expected}"
        )


def _is_int(v: object, lo: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


@dataclass(frozen=True)
class DaggerConfig:
    """DAgger rounds after behaviour cloning (the ``[dagger]`` table; 0 rounds: off).

    Each round rolls the current policy out in ``episodes`` episodes (over ``tasks``, in
    ``workers`` processes; under ``torchrun`` every rank runs its share), executing at each
    tick the scripted expert's action with probability ``beta * beta_decay ** (round - 1)``
    and the policy's otherwise. The expert labels every visited state; the labelled
    episodes are written to ``<out>/dagger/round_<r>[_rank<k>].h5`` and training goes on for
    ``steps`` more steps on the demonstrations plus every round so far.

    Attributes:
        rounds: DAgger rounds (0: behaviour cloning only).
        episodes: rollouts per round (all ranks together).
        steps: training steps after each round.
        beta: probability of executing the expert's action in the first round.
        beta_decay: factor on ``beta`` per round.
        tasks: task specs the rollouts cycle over (empty: the dataset's tasks); a task listed
            twice gets twice the rollouts.
        weight: the share of each batch drawn from the DAgger rounds' states once there are
            any (0: every sample equally likely, so the rounds' share is their share of the
            samples, about 10 % for 40 rollouts beside 1,500 demonstrations).
        workers: rollout worker processes per rank (0: in the training process).
        seed: seed of the first rollout episode (rounds and ranks offset it).
    """

    rounds: int = 0
    episodes: int = 40
    steps: int = 1000
    beta: float = 0.5
    beta_decay: float = 0.5
    tasks: tuple[str, ...] = ()
    workers: int = 2
    seed: int = 1_000_000
    weight: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        _check(
            "dagger.",
            self,
            "weight",
            isinstance(self.weight, (int, float)) and 0 <= self.weight < 1,
            "a number in [0, 1) (0: sample the rounds' states like the demonstrations)",
        )
        for name, lo in (("rounds", 0), ("episodes", 1), ("steps", 1), ("workers", 0), ("seed", 0)):
            _check("dagger.", self, name, _is_int(getattr(self, name), lo), f"an int >= {lo}")
        for name in ("beta", "beta_decay"):
            v = getattr(self, name)
            _check(
                "dagger.",
                self,
                name,
                isinstance(v, (int, float)) and 0 <= v <= 1,
                "a number in [0, 1]",
            )
        _check(
            "dagger.",
            self,
            "tasks",
            all(isinstance(t, str) for t in self.tasks),
            "a list of task specs",
        )


@dataclass(frozen=True)
class EvalConfig:
    """Closed-loop evaluation during training (the ``[eval]`` table; ``every = 0``: off).

    Every ``every`` steps (and at the end) the checkpoint runs ``episodes`` episodes per
    task of ``tasks`` in simulation, through the same path as ``mmrobot eval`` (safety layer
    on); the success rates go to ``metrics.jsonl`` (``kind = "eval"``) and a checkpoint is
    kept in ``<out>/best``: the latest whose mean success is at least the best so far minus
    ``keep_within`` (see :func:`mmrobot.train.trainer.keeps_checkpoint`).
    """

    every: int = 0
    episodes: int = 10
    tasks: tuple[str, ...] = ()
    workers: int = 2
    seed: int = 500_000
    keep_within: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        for name, lo in (("every", 0), ("episodes", 1), ("workers", 0), ("seed", 0)):
            _check("eval.", self, name, _is_int(getattr(self, name), lo), f"an int >= {lo}")
        w = self.keep_within
        ok = isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w < 1
        _check("eval.", self, "keep_within", ok, "a success fraction in [0, 1), e.g. 0.05")
        _check(
            "eval.",
            self,
            "tasks",
            all(isinstance(t, str) for t in self.tasks),
            "a list of task specs",
        )


@dataclass(frozen=True)
class LogConfig:
    """Where metrics go besides ``metrics.jsonl`` (the ``[log]`` table).

    ``metrics.jsonl`` is always written and is the record every other tool reads; with
    ``tensorboard = true`` the main process also writes the same training and evaluation
    rows to TensorBoard event files in ``<out>/tensorboard`` (the ``tensorboard`` extra;
    :mod:`mmrobot.train.tensorboard` lists the tags).
    """

    tensorboard: bool = False

    def __post_init__(self) -> None:
        _check("log.", self, "tensorboard", isinstance(self.tensorboard, bool), "true or false")


@dataclass(frozen=True)
class TrainConfig:
    """How to train a policy by behaviour cloning.

    Attributes:
        policy: policy config file (network sizes, observation spec), relative to this file.
        dataset: demonstration dataset (HDF5 from ``mmrobot collect``), relative to this file.
        out: run folder (checkpoint, metrics.jsonl, train_state), relative to the working dir.
        init: a checkpoint folder to fine-tune, relative to this file ("": train from
            scratch). Its network, normalization, action bins and lexicon are kept (``policy``
            is not read), its weights are the starting point, and the optimizer starts fresh.
            With ``init``, ``steps`` may be 0: DAgger round 1 then rolls out ``init`` itself.
        steps: optimizer steps of behaviour cloning before DAgger round 1.
        batch_size: samples per step per process.
        lr: peak learning rate (AdamW).
        weight_decay: AdamW weight decay (not applied to norms, biases, embeddings).
        warmup_steps: linear warm-up, then cosine decay to ``lr * min_lr_ratio``.
        perception_steps: the first steps train the camera heads' loss only (the policy
            config's ``training.encoder_aux``): the stem learns to find the block before
            behaviour cloning can settle on proprioception (docs/policy-trials.md).
        turn_steps: the first of the perception steps train the camera turn head alone (the
            policy config's ``training.camera_yaw``): trained beside the position heads from
            the start it memorizes the turn; trained alone first, it reads it, and keeps
            reading it once the position heads join (docs/policy-trials.md). At most
            ``perception_steps``.
        min_lr_ratio: final learning rate as a fraction of ``lr``.
        grad_clip: clip the global gradient norm to this (0: off).
        ema_decay: exponential moving average of weights (0: off); the checkpoint holds it.
        seed: seeds sampling, augmentation and dropout; the same seed gives the same run.
        action_binning: "quantile" bins from the dataset's actions, or "uniform".
        augment: random shift and colour jitter of camera images.
        shift_px: largest random image shift, pixels.
        color_jitter: largest relative brightness/contrast change.
        log_every: steps between metric lines.
        save_every: steps between checkpoints (the last step always saves).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        precision: "auto" (bf16 autocast on CUDA, fp32 on CPU), "fp32" or "bf16" (autocast
            on either; on CPUs with AVX512-BF16 or AMX it trains about 1.6x faster).
        threads: torch CPU threads (0: torch's default).
        compile: train through ``torch.compile`` (fused kernels: about 1.25x the eager
            samples/s on the 2-core CPU, after about 90 s of compilation); falls back to eager
            execution with a message when compilation fails.
        stack_swap: the share of stack samples that also train the camera heads on the
            instruction with the two blocks' roles swapped, the base block as the named one
            (0: off). Needs camera heads for ``block_rel`` and ``goal_rel``; one process only.
        label_sigma: soft action targets: each target token becomes a Gaussian over the
            bins, this many bins wide (standard deviation), so that a prediction a few bins
            off costs less than one far off (0: one-hot targets; docs/policy-trials.md).
        color_swap: the share of samples trained on with the blocks' colours permuted, in
            the camera images and in the instruction's colour words alike
            (:mod:`mmrobot.train.color_swap`; 0: off). Not together with ``stack_swap``.
        task_relabel: the share of pick, place and stack samples taken before the grasp
            that are trained on with another task's instruction naming the same block (the
            grasp is the same; :mod:`mmrobot.train.relabel`; 0: off). Not together with
            ``stack_swap``.
        camera_far_m: the camera heads (``training.encoder_aux``) weigh the samples whose
            gripper is nearer than this (x-y, metres) to the named block by
            ``camera_near_weight``: nearer, "the block by the gripper" finds it without the
            words (0: every sample weighs 1; docs/policy-trials.md, "After v11").
        camera_near_weight: the weight of those near samples against 1 for the far ones
            (0: left out).
        dagger: the ``[dagger]`` table (:class:`DaggerConfig`).
        eval: the ``[eval]`` table (:class:`EvalConfig`).
        log: the ``[log]`` table (:class:`LogConfig`).
    """

    policy: str = "default.toml"
    dataset: str = "../data/demos.h5"
    out: str = "runs/default"
    init: str = ""
    steps: int = 2000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    perception_steps: int = 0
    turn_steps: int = 0
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.0
    seed: int = 0
    action_binning: str = "uniform"
    augment: bool = True
    shift_px: int = 4
    color_jitter: float = 0.1
    log_every: int = 10
    save_every: int = 500
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0
    compile: bool = True
    stack_swap: float = 0.0
    label_sigma: float = 0.0
    color_swap: float = 0.0
    task_relabel: float = 0.0
    camera_far_m: float = 0.0
    camera_near_weight: float = 0.0
    dagger: DaggerConfig = dataclasses.field(default_factory=DaggerConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    log: LogConfig = dataclasses.field(default_factory=LogConfig)
    # Where the file was read from; relative paths resolve against it.
    base_dir: str = "."

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise ConfigError(
                    f"train config: {name} = {getattr(self, name)!r}; expected {expected}"
                )

        check("init", isinstance(self.init, str), 'a checkpoint folder, or "" for none')
        check(
            "steps",
            isinstance(self.steps, int) and self.steps >= (0 if self.init else 1),
            "an int >= 1 (>= 0 when fine-tuning a checkpoint with init)",
        )
        check(
            "steps",
            self.steps + self.dagger.rounds * self.dagger.steps >= 1,
            "at least one training step in all (steps, or dagger.rounds x dagger.steps)",
        )
        for name in ("batch_size", "log_every", "save_every"):
            check(
                name,
                isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                "an int >= 1",
            )
        for name in (
            "warmup_steps",
            "perception_steps",
            "turn_steps",
            "seed",
            "shift_px",
            "threads",
        ):
            check(
                name,
                isinstance(getattr(self, name), int) and getattr(self, name) >= 0,
                "an int >= 0",
            )
        check(
            "perception_steps",
            self.perception_steps == 0 or self.perception_steps < self.steps,
            f"fewer than steps = {self.steps}, so that the action head is trained too"
            + (" (fine-tuning with steps = 0: set perception_steps = 0)" if self.init else ""),
        )
        check(
            "turn_steps",
            self.turn_steps <= self.perception_steps,
            f"at most perception_steps = {self.perception_steps} (the turn head trains alone "
            "within the perception steps)",
        )
        check("lr", isinstance(self.lr, (int, float)) and 0 < self.lr < 1, "a number in (0, 1)")
        check("weight_decay", 0 <= self.weight_decay < 1, "a number in [0, 1)")
        check("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "a number in [0, 1]")
        check("grad_clip", self.grad_clip >= 0, "a number >= 0 (0 turns clipping off)")
        check("ema_decay", 0 <= self.ema_decay < 1, "a number in [0, 1) (0 turns EMA off)")
        check("color_jitter", 0 <= self.color_jitter < 1, "a number in [0, 1)")
        check(
            "action_binning",
            self.action_binning in ("quantile", "uniform"),
            "'quantile' or 'uniform'",
        )
        check("device", self.device in ("auto", "cpu", "cuda"), "'auto', 'cpu' or 'cuda'")
        check("precision", self.precision in ("auto", "fp32", "bf16"), "'auto', 'fp32' or 'bf16'")
        check("augment", isinstance(self.augment, bool), "true or false")
        check("compile", isinstance(self.compile, bool), "true or false")
        in_unit = {  # numbers in [0, 1]
            "stack_swap": "a number in [0, 1] (0: off)",
            "color_swap": "a number in [0, 1] (0: off)",
            "task_relabel": "a number in [0, 1] (0: off)",
            "camera_far_m": "a distance in metres in [0, 1] (0: every sample)",
            "camera_near_weight": "a weight in [0, 1] (0: the near samples are left out)",
        }
        for name, what in in_unit.items():
            value = getattr(self, name)
            check(name, isinstance(value, (int, float)) and 0 <= value <= 1, what)
        check(
            "label_sigma",
            isinstance(self.label_sigma, (int, float)) and 0 <= self.label_sigma <= 64,
            "a number of bins in [0, 64] (0: one-hot targets)",
        )
        if self.camera_near_weight and not self.camera_far_m:
            raise ConfigError(
                f"camera_near_weight = {self.camera_near_weight} weighs the samples nearer than "
                "camera_far_m, but camera_far_m is 0 (every sample weighs 1): set camera_far_m "
                "(e.g. 0.08) or camera_near_weight = 0"
            )
        if self.task_relabel and self.stack_swap:
            raise ConfigError(
                "task_relabel and stack_swap cannot be combined yet (a relabelled stack sample "
                "would still train the swapped stack instruction); set one of them to 0"
            )
        if self.color_swap and self.stack_swap:
            raise ConfigError(
                "color_swap and stack_swap cannot be combined yet (the swapped stack "
                "instruction would keep the old colours); set one of them to 0"
            )

    @property
    def total_steps(self) -> int:
        """Behaviour-cloning steps plus the steps after every DAgger round."""
        return self.steps + self.dagger.rounds * self.dagger.steps

    def stage(self, step: int) -> str:
        """What step ``step`` trains (:func:`~mmrobot.train.step.training_loss`'s stage):
        ``"turn"`` in the first ``turn_steps``, ``"camera"`` in the rest of the
        ``perception_steps``, then ``"policy"``."""
        turn, camera, policy = STAGES
        if step < self.turn_steps:
            return turn
        return camera if step < self.perception_steps else policy

    def check_camera_heads(self, heads: set[str], world: int = 1) -> None:
        """Refuse settings that need camera heads (``training.encoder_aux``) the policy lacks.

        Args:
            heads: the policy's camera heads (``FusionPolicyModel.camera_aux_heads``).
            world: training processes (``stack_swap`` runs in one only).
        """
        if self.stack_swap and not {"block_rel", "goal_rel"} <= heads:
            raise ConfigError(
                f"stack_swap = {self.stack_swap} trains the camera heads of block_rel and "
                f"goal_rel on swapped stack instructions, but the policy has "
                f"{sorted(heads) or 'no camera heads'}: set training.encoder_aux = true with "
                "aux_weights for block_rel and goal_rel, or stack_swap = 0"
            )
        if self.stack_swap and world > 1:
            raise ConfigError("stack_swap is not supported under torchrun yet; set stack_swap = 0")
        if self.camera_far_m and "block_rel" not in heads:
            raise ConfigError(
                f"camera_far_m = {self.camera_far_m} selects the samples of the camera heads by "
                "the named block's distance, but the policy has no block_rel camera head: set "
                "training.encoder_aux = true with an aux_weights entry for block_rel in the "
                "policy config, or camera_far_m = 0"
            )
        if self.turn_steps and "block_yaw" not in heads:
            raise ConfigError(
                f"turn_steps = {self.turn_steps} trains the camera turn head alone, but the "
                "policy has none: set training.camera_yaw > 0 (with encoder_aux = true) in the "
                "policy config, or turn_steps = 0"
            )
        if self.perception_steps and not heads:
            raise ConfigError(
                f"perception_steps = {self.perception_steps} trains the camera heads alone, but "
                "the policy has none: set training.encoder_aux = true (with aux_weights for "
                "block_rel or goal_rel) in the policy config, or perception_steps = 0"
            )

    def path(self, name: str) -> Path:
        """``policy``, ``dataset`` or ``init`` resolved against the config file's folder."""
        p = Path(getattr(self, name))
        return p if p.is_absolute() else Path(self.base_dir) / p

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def with_overrides(self, overrides: list[str]) -> TrainConfig:
        """Apply ``key=value`` or ``section.key=value`` strings (``dagger.rounds=2``); values
        are parsed as TOML, bare words as strings."""
        sections = {"dagger": self.dagger, "eval": self.eval, "log": self.log}
        known = {f.name for f in fields(self)} - {"base_dir", *sections}
        changes: dict[str, Any] = {}
        section_changes: dict[str, dict[str, Any]] = {k: {} for k in sections}
        for item in overrides:
            key, value = parse_override(item, example="steps=200 or dagger.rounds=2")
            section, dot, sub = key.partition(".")
            if dot and section in sections:
                names = {f.name for f in fields(sections[section])}
                if sub not in names:
                    raise ConfigError(
                        f"override {item!r}: {section}.{sub} is not one of "
                        f"{sorted(f'{section}.{n}' for n in names)}"
                    )
                target, current = section_changes[section], getattr(sections[section], sub)
                key = sub
            elif key in known:
                target, current = changes, getattr(self, key)
            else:
                raise ConfigError(
                    f"override {item!r}: {key!r} is not one of {sorted(known)} "
                    f"or a key of the sections {sorted(sections)} (e.g. dagger.rounds)"
                )
            if isinstance(current, float) and isinstance(value, int):
                value = float(value)
            target[key] = value
        for name, sub_changes in section_changes.items():
            if sub_changes:
                changes[name] = dataclasses.replace(sections[name], **sub_changes)
        return self.replace(**changes)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a training config file (a ``[train]`` table)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"training config {str(path)!r} not found (try policies/train_default.toml)"
        )
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    unknown_top = sorted(set(doc) - {"train", "dagger", "eval", "log"})
    if unknown_top or "train" not in doc:
        raise ConfigError(
            f"{path}: expected a [train] table and optional [dagger], [eval] and [log] tables, "
            f"found {sorted(doc)}"
        )
    table = dict(doc["train"])
    known = {f.name for f in fields(TrainConfig)} - {"base_dir", "dagger", "eval", "log"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{path} [train]: unknown key(s) {unknown}; expected some of {sorted(known)}"
        )
    for name, cls in (("dagger", DaggerConfig), ("eval", EvalConfig), ("log", LogConfig)):
        sub = doc.get(name, {})
        names = {f.name for f in fields(cls)}
        bad = sorted(set(sub) - names)
        if bad:
            raise ConfigError(
                f"{path} [{name}]: unknown key(s) {bad}; expected some of {sorted(names)}"
            )
        try:
            table[name] = cls(**sub)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from e
    try:
        return TrainConfig(**table, base_dir=str(path.parent))
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e
