"""Behaviour cloning of the fusion policy: cross-entropy on action tokens.

One process or many: under ``torchrun`` (``WORLD_SIZE`` set) the same code trains with
DistributedDataParallel (gloo on CPU, NCCL on GPU), each process taking its slice of every
global batch.

Everything random is derived from ``(seed, step)``: the batch indices, the image
augmentation and the torch generator behind dropout. A run is therefore deterministic on
the CPU, and ``--resume`` continues exactly where it stopped from the step counter, the
weights and the optimizer state alone — there is no hidden RNG state to save.

Checkpoints are written atomically (temporary file, then rename): the policy checkpoint
(safetensors + JSON, loadable with :func:`mmrobot.policies.load_checkpoint`) and the
training state (:mod:`mmrobot.train.train_state`: optimizer tensors as safetensors, the rest
as JSON; no pickle).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from mmrobot.core.errors import ConfigError
from mmrobot.core.extras import Need, require_extras
from mmrobot.envs.dataset import DemoDataset
from mmrobot.policies import (
    ActionTokenizer,
    FusionPolicyModel,
    PolicyConfig,
    load_policy_config,
    save_checkpoint,
)
from mmrobot.policies.checkpoint import copy_checkpoint, load_checkpoint
from mmrobot.train.batches import BatchMaker, chunk_targets, map_projection
from mmrobot.train.config import TrainConfig
from mmrobot.train.data import ChunkSamples, fit_policy_config
from mmrobot.train.progress import TrainProgress
from mmrobot.train.run_dir import (
    METRICS,
    STATE_JSON,
    check_run_dir,
    clear_run_dir,
    truncate_metrics,
)
from mmrobot.train.step import (
    aux_loss,
    make_optimizer,
    set_camera_offsets,
    token_loss,
    training_loss,
    weights_digest,
)
from mmrobot.train.tensorboard import TensorBoardMirror
from mmrobot.train.train_state import load_train_state, save_train_state, saved_policy_config

__all__ = [
    "Trainer",
    "TrainResult",
    "aux_loss",
    "keeps_checkpoint",
    "make_optimizer",
    "token_loss",
    "train",
    "weights_digest",
]


def keeps_checkpoint(success: float, best: float, keep_within: float = 0.0) -> bool:
    """Whether a check's checkpoint replaces the kept one (``eval.keep_within``).

    ``best`` is the best success of the checks before it (-1 before the first). A check
    within ``keep_within`` of that best replaces the kept checkpoint: the later one has
    trained longer, and a short closed-loop check has an interval of several points (40
    episodes at 65 %: about +-15), so an earlier peak by less than that is noise. Ties go to
    the later check even at 0. Run over a whole schedule, this keeps the latest check within
    ``keep_within`` of the best of all checks.
    """
    return success >= best - keep_within - 1e-9  # 1e-9: 0.3 >= 0.4 - 0.1 is False in floats


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    checkpoint: Path
    steps: int
    final_loss: float
    final_token_accuracy: float
    wall_s: float


class Trainer:
    """Trains one policy from a :class:`TrainConfig`.

    Args:
        config: the training configuration.
        progress: show a progress bar (rank 0 only).
        log: where status lines go (rank 0 only).
        policy_config: the network to train, instead of reading ``config.policy`` (for
            programmatic sweeps such as the fusion ablation).
    """

    def __init__(
        self,
        config: TrainConfig,
        progress: bool = True,
        log: Callable[[str], None] = print,
        policy_config: PolicyConfig | None = None,
    ) -> None:
        self.config = config
        self.policy_config = policy_config
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0
        self.progress = progress and self.is_main
        self._log = log
        self.run_dir = Path(config.out)
        self._mirror: TensorBoardMirror | None = None
        if config.threads:
            torch.set_num_threads(config.threads)
        want_cuda = config.device == "cuda" or (
            config.device == "auto" and torch.cuda.is_available()
        )
        if config.device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("train config: device = 'cuda' but torch sees no CUDA device")
        self.owns_group = False  # a process group made here; train() ends it
        if self.world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group("nccl" if want_cuda else "gloo")
                self.owns_group = True
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if want_cuda else "cpu")

    def log(self, message: str) -> None:
        if self.is_main:
            self._log(message)

    def _append_metrics(self, row: dict) -> None:
        """One ``metrics.jsonl`` line (the record), mirrored to TensorBoard when it is on."""
        with open(self.run_dir / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self._mirror is not None:
            self._mirror.write(row)

    # ------------------------------------------------------------------ setup
    def _schedule(self, step: int) -> float:
        c = self.config
        if step < c.warmup_steps:
            return (step + 1) / c.warmup_steps
        progress = (step - c.warmup_steps) / max(1, c.total_steps - c.warmup_steps)
        return c.min_lr_ratio + (1 - c.min_lr_ratio) * 0.5 * (
            1 + math.cos(math.pi * min(1.0, progress))
        )

    def _init_model(self) -> FusionPolicyModel:
        """The checkpoint named by ``init``, with a clear error when it is not one."""
        path = self.config.path("init")
        if not path.is_dir():
            raise ConfigError(
                f"train config: init = {self.config.init!r} ({path}) is not a folder; name a "
                "checkpoint folder (config.json + model.safetensors), e.g. ../policies/release"
            )
        return load_checkpoint(path)

    def _optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        return make_optimizer(model, self.config.lr, self.config.weight_decay)

    # ------------------------------------------------------------------ state
    def _save(
        self,
        model: FusionPolicyModel,
        ema: dict[str, torch.Tensor] | None,
        optimizer: torch.optim.Optimizer,
        step: int,
        metrics: dict[str, float],
    ) -> Path:
        ckpt = self.run_dir / "checkpoint"
        if ema is not None:
            live = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(ema)
        save_checkpoint(
            model,
            ckpt,
            metadata={"step": step, **metrics, "dataset": str(self.config.path("dataset"))},
        )
        if ema is not None:
            model.load_state_dict(live)
        save_train_state(self.run_dir, model, ema, optimizer, step, asdict(self.config))
        return ckpt

    def _load(
        self,
        model: FusionPolicyModel,
        ema: dict[str, torch.Tensor] | None,
        optimizer: torch.optim.Optimizer,
    ) -> int:
        return load_train_state(self.run_dir, model, ema, optimizer, self.device)

    def _check_replicas(self, model: nn.Module) -> None:
        """DDP: gather every replica's weight digest; rank 0 records them (they must agree)."""
        import torch.distributed as dist

        digests: list[str | None] = [None] * self.world
        dist.all_gather_object(digests, weights_digest(model))
        if self.is_main:
            same = len(set(digests)) == 1
            self._append_metrics({"kind": "ddp", "replica_digests": digests, "in_sync": same})
            if not same:
                self.log(f"warning: DDP replicas diverged: {digests}")
        dist.barrier()

    # ------------------------------------------------------------------ DAgger and evaluation
    def _round_start(self, r: int) -> int:
        """The step before which DAgger round ``r`` (1-based) is collected."""
        return self.config.steps + (r - 1) * self.config.dagger.steps

    def _rounds_due(self, step: int) -> int:
        d = self.config.dagger
        return sum(1 for r in range(1, d.rounds + 1) if self._round_start(r) <= step)

    def _round_files(self, r: int) -> list[Path]:
        return sorted((self.run_dir / "dagger").glob(f"round_{r:02d}*.h5"))

    def _collect_round(self, r: int, checkpoint: Path, tasks: list[str], turn: str) -> None:
        """Roll out ``checkpoint`` for round ``r``: each rank its share, into its own file,
        labelled by the expert that labelled the demonstrations (``turn``)."""
        from mmrobot.train.dagger import collect_round

        d = self.config.dagger
        beta = d.beta * d.beta_decay ** (r - 1)
        seeds = list(range(d.seed + r * 100_000, d.seed + r * 100_000 + d.episodes))
        mine = seeds[self.rank :: self.world]
        suffix = f"_rank{self.rank}" if self.world > 1 else ""
        out = self.run_dir / "dagger" / f"round_{r:02d}{suffix}.h5"
        out.parent.mkdir(parents=True, exist_ok=True)
        summary = collect_round(
            checkpoint,
            out,
            tasks,
            mine,
            beta=beta,
            workers=d.workers,
            progress=self.progress,
            expert_turn=turn,
        )
        self.log(
            f"DAgger round {r}: {summary['episodes']} episodes, {summary['steps']} labelled "
            f"states, policy success {summary['success_rate']:.0%} (beta {beta:.2f}), "
            f"{summary['seconds']:.0f} s"
        )
        if self.is_main:
            self._append_metrics({"kind": "dagger", "round": r, "beta": beta, **summary})

    def _evaluate(self, checkpoint: Path, step: int, tasks: list[str]) -> float:
        """Closed-loop success of ``checkpoint`` (main rank); writes an ``eval`` metrics row."""
        from mmrobot.train.eval import quick_success

        e = self.config.eval
        t0 = time.perf_counter()
        rates = quick_success(checkpoint, tasks, e.episodes, seed=e.seed, workers=e.workers)
        row = {
            "kind": "eval",
            "step": step,
            "success": rates["mean"],
            "per_task": rates["per_task"],
            "episodes_per_task": e.episodes,
            "seconds": time.perf_counter() - t0,
        }
        self._append_metrics(row)
        self.log(f"step {step}: closed-loop success {rates['mean']:.0%} {rates['per_task']}")
        return float(rates["mean"])

    def _barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False, overwrite: bool = False) -> TrainResult:
        """Train; ``resume`` continues the run in ``config.out``, ``overwrite`` replaces it
        (:mod:`mmrobot.train.run_dir`: a run there is refused otherwise)."""
        c = self.config
        t_start = time.perf_counter()
        check_run_dir(self.run_dir, resume, overwrite)
        if c.log.tensorboard and self.is_main:  # before the data is read, not after
            require_extras([Need("tensorboard")], "[log] tensorboard = true")
        demos = DemoDataset(c.path("dataset"))
        init = self._init_model() if c.init else None
        if init is not None and self.policy_config is not None:
            raise ConfigError("train: give either init (a checkpoint) or a policy_config, not both")
        base = init.config if init else self.policy_config or load_policy_config(c.path("policy"))
        resuming = resume and (self.run_dir / STATE_JSON).is_file()
        if resume and not resuming:
            self.log(f"no training state in {self.run_dir}; starting a new run")
        weights = base.training.loss_weights
        aux_names = list(
            dict.fromkeys(n.removeprefix("camera/").removeprefix("camera_map/") for n in weights)
        )
        if base.training.camera_position_heads:
            aux_names.append("tcp")  # the camera position heads' targets are in the base frame

        def load_samples(rounds: int) -> ChunkSamples:
            extra = [DemoDataset(p) for r in range(1, rounds + 1) for p in self._round_files(r)]
            return ChunkSamples(
                demos,
                base.streams,
                base.action.horizon,
                base.language.max_len,
                aux=aux_names,
                extra=extra,
            )

        samples = load_samples(0)
        tasks = list(dict.fromkeys(t.split()[0] for t in samples.tasks))
        if resuming:
            config = saved_policy_config(self.run_dir)
        elif init is not None:
            config = init.config  # its normalization and bins: the weights were fit to them
        else:
            config = fit_policy_config(samples, base, c.action_binning)
        loss_weights = config.training.loss_weights  # head -> weight, read once, not per step
        torch.manual_seed(c.seed)  # the initial weights
        model = FusionPolicyModel(config).to(self.device)
        c.check_camera_heads(set(model.camera_aux_heads), self.world)
        if init is not None:
            model.load_state_dict(init.state_dict())  # resuming overwrites it below
        else:
            set_camera_offsets(model, samples.aux)
        action_tokenizer = ActionTokenizer.from_config(config.action)
        optimizer = self._optimizer(model)
        ema = (
            {k: v.detach().clone() for k, v in model.state_dict().items()}
            if c.ema_decay > 0
            else None
        )
        start = self._load(model, ema, optimizer) if resuming else 0
        rounds_loaded = self._rounds_due(start)
        if rounds_loaded and all(self._round_files(r) for r in range(1, rounds_loaded + 1)):
            samples = load_samples(rounds_loaded)
        else:
            rounds_loaded = 0  # a round's data is missing: collect it again below
        # Tokenized once per dataset change: the bins never change during a run.
        targets_all = chunk_targets(action_tokenizer, samples)
        batches = BatchMaker(c, self.device, self.rank, self.world, map_projection(config))
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            # The perception steps leave the fusion and action parameters without gradients.
            net: nn.Module = DistributedDataParallel(
                model, find_unused_parameters=c.perception_steps > 0
            )
        else:
            net = model
        eager = net
        if c.compile:
            net = torch.compile(net)  # compiles on the first step (about 90 s on 2 cores)
        evals: list[dict] = []
        if self.is_main:  # the data read: only now is the old run replaced
            if overwrite:
                clear_run_dir(self.run_dir)
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # resumed: what the stopped attempt logged past its saved state is logged again;
            # its evaluations up to there keep the best so far
            evals = truncate_metrics(self.run_dir, start if resuming else 0)
            if c.log.tensorboard:
                self._mirror = TensorBoardMirror(self.run_dir, start_step=start)
        total_steps = c.total_steps
        if init is not None and not resuming:
            self.log(f"fine-tuning {c.path('init')}")
        self.log(
            f"training {model.num_parameters():,} parameters on {len(samples):,} samples "
            f"({len(samples.episodes)} episodes), {total_steps} steps"
            + (f" ({c.dagger.rounds} DAgger rounds)" if c.dagger.rounds else "")
            + f", batch {c.batch_size} x {self.world} process(es), device {self.device}"
        )
        use_amp = c.precision == "bf16" or (c.precision == "auto" and self.device.type == "cuda")
        loss_v, acc_v = float("nan"), float("nan")
        progress = TrainProgress(total_steps, start) if self.progress else None
        window_t, window_n = time.perf_counter(), 0
        ckpt = self.run_dir / "checkpoint"
        best_dir = self.run_dir / "best"
        best = max((float(r["success"]) for r in evals if r.get("kind") == "eval"), default=-1.0)
        eval_tasks = list(c.eval.tasks) or tasks
        dagger_tasks = list(c.dagger.tasks) or tasks
        try:
            for step in range(start, total_steps):
                due = self._rounds_due(step)
                if due > rounds_loaded:
                    for r in range(rounds_loaded + 1, due + 1):
                        if self.is_main:
                            self._save(model, ema, optimizer, step, {"loss": loss_v})
                        self._barrier()
                        self._collect_round(
                            r, self.run_dir / "checkpoint", dagger_tasks, demos.expert_turn
                        )
                        self._barrier()
                    rounds_loaded = due
                    samples = load_samples(rounds_loaded)
                    targets_all = chunk_targets(action_tokenizer, samples)
                    self.log(f"training on {len(samples):,} samples after round {due}")
                batch, targets, aux_targets, idx = batches.batch(samples, config, targets_all, step)
                torch.manual_seed(c.seed * 1_000_003 + step)  # dropout and modality dropout
                for g in optimizer.param_groups:
                    g["lr"] = c.lr * self._schedule(step)
                net.train()
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=use_amp):
                    # Through net's forward, so that DDP's gradient hooks fire.
                    try:
                        logits, aux_pred = net(batch, targets, with_aux=True)
                    except Exception as e:  # noqa: BLE001 - any compiler failure
                        if net is eager:
                            raise
                        self.log(
                            f"torch.compile failed ({type(e).__name__}: {str(e)[:200]}); "
                            "training eagerly (set compile = false to skip the attempt)"
                        )
                        net = eager
                        logits, aux_pred = net(batch, targets, with_aux=True)
                    total, loss, acc, aux_losses = training_loss(
                        logits,
                        targets,
                        aux_pred,
                        aux_targets,
                        loss_weights,
                        c.stage(step),
                        label_sigma=c.label_sigma,
                        camera_far_m=c.camera_far_m,
                        camera_near_weight=c.camera_near_weight,
                    )
                    if c.stack_swap:
                        swap = batches.swap_losses(model, samples, batch, aux_targets, idx, step)
                        for n, v in swap.items():
                            total = total + loss_weights[n.removeprefix("swap/")] * v
                        aux_losses = {**aux_losses, **swap}
                optimizer.zero_grad(set_to_none=True)
                total.backward()
                if c.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
                optimizer.step()
                if ema is not None:
                    with torch.no_grad():
                        for k, v in model.state_dict().items():
                            if v.dtype.is_floating_point:
                                ema[k].mul_(c.ema_decay).add_(v, alpha=1 - c.ema_decay)
                            else:
                                ema[k].copy_(v)
                loss_v, acc_v = float(loss.detach()), float(acc.detach())
                window_n += c.batch_size * self.world
                done = step + 1
                last = done == total_steps
                rate = None
                if self.is_main and (done % c.log_every == 0 or last):
                    now = time.perf_counter()
                    rate = window_n / max(now - window_t, 1e-9)
                    window_t, window_n = now, 0
                    line = {
                        "kind": "train",
                        "step": done,
                        "loss": loss_v,
                        "token_accuracy": acc_v,
                        **{
                            f"aux_{n.replace('/', '_')}": float(v.detach())
                            for n, v in aux_losses.items()
                        },
                        "lr": optimizer.param_groups[0]["lr"],
                        "samples_per_s": rate,
                        "elapsed_s": now - t_start,
                    }
                    self._append_metrics(line)
                evaluate_now = c.eval.every and (done % c.eval.every == 0 or last)
                if self.is_main and (done % c.save_every == 0 or last or evaluate_now):
                    ckpt = self._save(
                        model, ema, optimizer, done, {"loss": loss_v, "token_accuracy": acc_v}
                    )
                if evaluate_now:
                    if self.is_main:
                        success = self._evaluate(ckpt, done, eval_tasks)
                        if keeps_checkpoint(success, best, c.eval.keep_within):
                            copy_checkpoint(ckpt, best_dir, {"step": done, "success": success})
                        best = max(best, success)
                    self._barrier()
                    window_t = time.perf_counter()  # evaluation time is not training time
                if progress:
                    progress.update(done, loss_v, acc_v, rate)
        finally:
            if progress:
                progress.close()
            if self._mirror is not None:
                self._mirror.close()
                self._mirror = None
        if self.world > 1:
            self._check_replicas(model)
        wall = time.perf_counter() - t_start
        final = best_dir if c.eval.every and best_dir.is_dir() else ckpt
        self.log(
            f"done: step {total_steps}, loss {loss_v:.4f}, token accuracy {acc_v:.3f}, "
            f"{wall:.0f} s; checkpoint {final}"
            + (f" (best check's closed-loop success {best:.0%})" if c.eval.every else "")
        )
        return TrainResult(self.run_dir, final, total_steps, loss_v, acc_v, wall)


def train(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    policy_config: PolicyConfig | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train a policy from ``config`` (see :class:`Trainer` and :meth:`Trainer.run`)."""
    trainer = Trainer(config, progress=progress, policy_config=policy_config)
    try:
        return trainer.run(resume=resume, overwrite=overwrite)
    finally:  # left to interpreter exit, gloo's threads aborted a rank now and then (SIGABRT)
        if trainer.owns_group:
            import gc

            import torch.distributed as dist

            # the DDP wrapper (its reducer holds the group's pending work) sits in reference
            # cycles: free it while the group still exists, then end the group
            gc.collect()
            dist.destroy_process_group()
