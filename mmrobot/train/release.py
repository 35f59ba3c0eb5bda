"""``mmrobot release``: the released policy, reproduced from scratch by one command.

A release config (``policies/release.toml``) names everything; the stages run in order:

1. ``collect``: scripted-expert demonstrations (:func:`mmrobot.envs.collect.collect`) into
   ``<work>/demos.h5``;
2. ``heldout``: a few more episodes on other seeds into ``<work>/heldout.h5``, never trained
   on (the modality-reliance measurement uses them);
3. ``train``: :func:`mmrobot.train.trainer.train` in this process, with the DAgger rounds and
   the closed-loop evaluation during training of the train config, into ``<work>/train``;
4. ``checkpoint``: the trainer's chosen checkpoint (``best/`` when evaluation during
   training is on, else the last) copied into the release folder, with a WordNet lexicon
   of the training instructions' words (``[release] lexicon``; see
   :mod:`mmrobot.policies.wordnet`);
5. ``evaluate``: :func:`mmrobot.train.eval.evaluate` of the released checkpoint on the
   configured splits (safety layer on, as ``mmrobot run``);
6. ``onnx_fp32``, ``onnx_int8`` (as configured): :func:`mmrobot.deploy.export.export_onnx`,
   then the same evaluation of the exported model on ``onnx_splits``;
7. ``reliance``: :func:`mmrobot.train.reliance.modality_reliance` on the held-out slice;
8. ``report``: ``metrics.jsonl`` and ``curves.png`` (:func:`mmrobot.train.plot.plot_run`),
   ``eval.json`` (the torch evaluation as ``mmrobot eval --json`` writes it, the exports'
   evaluations under ``"exports"``).

Then ``release.json`` (the record: data, training, the wall time of every stage measured
with :func:`time.perf_counter`, load averages, the machine; :mod:`mmrobot.train.release_state`
writes it and the state file) and ``MODEL_CARD.md``, which
:func:`render_model_card` builds from ``eval.json``, ``metrics.jsonl`` and ``release.json``
alone, so every number in the card is one those files hold. :func:`check_model_card`
renders it again and checks ``eval.json``'s tables against its own episode list.

With ``resume`` a stage whose output is complete is skipped (its recorded time is kept);
once a stage runs, every later one runs too. A resumed run may change the ``[train]``
settings (the demonstrations are kept and training starts over) or the ``[evaluate]`` ones
(more episodes, another split: the trained checkpoint is evaluated again);
:data:`~mmrobot.train.release_state.RERUN_FROM` says which stage each reruns from.
``toy`` is the end-to-end smoke test (two episodes per task, a few steps, one DAgger round,
a tiny network); it writes to a temporary folder unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmrobot.core.errors import ConfigError, MmrobotError
from mmrobot.core.machine import load_average
from mmrobot.train.model_card import ModelCardMismatch, check_model_card, render_model_card
from mmrobot.train.release_config import (
    CARD_FILE,
    CURVES_FILE,
    DEFAULT_CONFIG,
    EVAL_FILE,
    METRICS_FILE,
    RECORD_FILE,
    STATE_FILE,
    TOY_OVERRIDES,
    ReleaseConfig,
    load_release_config,
    toy_policy_config,
)
from mmrobot.train.release_state import (
    RUNNING_FILE,
    StageClock,
    interrupted,
    load_state,
    new_state,
    release_record,
    utc_now,
    write_json,
)

# The config, the model card and the run: one import path for callers (mmrobot release).
__all__ = [
    "CARD_FILE",
    "DEFAULT_CONFIG",
    "EVAL_FILE",
    "RECORD_FILE",
    "TOY_OVERRIDES",
    "ModelCardMismatch",
    "ReleaseConfig",
    "check_model_card",
    "load_release_config",
    "render_model_card",
    "run_release",
]

# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class _Stage:
    name: str
    title: str
    run: Callable[[], dict[str, Any]]
    done: Callable[[], bool]
    # whether running it now continues an interrupted attempt (whose time then counts)
    continues: Callable[[], bool] = lambda: False


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
        defaults = {"release": ReleaseConfig().to_dict()}
        self.state, changed, self.rerun_from = (
            load_state(self.state_path, config_doc, defaults) if resume else (None, [], None)
        )
        if changed:
            self.console.print(
                f"settings changed ({', '.join(changed)}): the stages from {self.rerun_from!r} "
                "on run again, the earlier ones are kept"
            )
        if resume and self.state is None:
            self.console.print(f"no release state in {self.work}; starting from the beginning")
        if self.state is None:
            self.state = new_state(config_doc, command)
        self.state["command"] = command
        self.state["invocations"] = self.state.get("invocations", 0) + 1
        self.state["train_config"] = json.loads(json.dumps(dataclasses.asdict(self.train_config)))

    def _save_state(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        write_json(self.state_path, self.state)

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
                continues=self._train_resumes,
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
        if self.config.release.lexicon and not self.toy:
            from mmrobot.policies.wordnet import find_wordnet

            find_wordnet()  # before hours of training, not after
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
            running = self.work / RUNNING_FILE
            carried, before = interrupted(running, stage.name) if stage.continues() else (0.0, 0)
            if before:
                self.console.print(
                    f"continues {before} interrupted attempt(s) that ran {carried:.1f} s"
                )
            load0, started = load_average(), utc_now()
            invocation = self.state["invocations"]
            with StageClock(running, stage.name, invocation, carried, before + 1) as clock:
                record = stage.run()
            seconds = clock.seconds
            self.state.update(record)
            self.state["stages"][stage.name] = {
                "seconds": seconds,
                "started": started,
                "load_average_start": load0,
                "load_average_end": load_average(),
                "invocation": invocation,
                **({"interrupted_s": carried, "attempts": before + 1} if before else {}),
            }
            self._save_state()
            self._ran.append(stage.name)
            self.console.print(f"[green]{stage.name} done[/green] in {seconds:.1f} s")
        return self._finish([s.name for s in stages])

    def _collect_into(
        self, name: str, episodes: int, seed: int, perturb: bool = False
    ) -> dict[str, Any]:
        from mmrobot.envs.collect import CollectConfig, collect
        from mmrobot.envs.dataset import DemoDataset
        from mmrobot.envs.perturb import Perturbation

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
            perturbation=Perturbation(c.perturb_rate, c.perturb_steps, grasp_miss=c.grasp_miss)
            if perturb
            else Perturbation(),
            expert_turn=c.expert_turn,
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
        # perturbed training demonstrations only: the held-out slice, which modality reliance
        # is measured on, stays the expert's own episodes
        return {"data": self._collect_into("demos.h5", c.episodes, c.seed, perturb=True)}

    def _heldout(self) -> dict[str, Any]:
        c = self.config.collect
        return {"heldout": self._collect_into("heldout.h5", c.heldout_episodes, c.heldout_seed)}

    def _train_resumes(self) -> bool:
        """The trainer resumes its own run only when its data and its config are unchanged."""
        return self.resume and not self._ran and self.rerun_from != "train"

    def _train(self) -> dict[str, Any]:
        from mmrobot.policies.checkpoint import read_checkpoint_config
        from mmrobot.train.trainer import train

        tc = self.train_config
        resume = self._train_resumes()
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
                "keep_within": tc.eval.keep_within,
                "steps": result.steps,
                "dagger_rounds": tc.dagger.rounds,
                "final_loss": result.final_loss,
                "final_token_accuracy": result.final_token_accuracy,
                "wall_s": result.wall_s,
            }
        }

    def _checkpoint(self) -> dict[str, Any]:
        from mmrobot.policies import load_checkpoint
        from mmrobot.policies.checkpoint import copy_checkpoint

        src = Path(self.state["training"]["checkpoint"])
        copy_checkpoint(src, self.out)
        lexicon = None
        if self.config.release.lexicon and (not self.toy or self._wordnet_found()):
            from mmrobot.policies.wordnet import add_lexicon

            lexicon = add_lexicon(self.out, self.work / "demos.h5")
            self.console.print(
                f"lexicon: {lexicon['entries']} WordNet words onto {lexicon['vocabulary']} "
                "training words"
            )
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
            # every training-only head by its prediction's name: the fused ones, the camera
            # heads (camera/...) and maps (camera_map/...)
            "aux_heads": sorted(n for n, w in cfg.training.loss_weights.items() if w > 0),
            "lexicon": lexicon,
        }
        self.console.print(
            f"{src} -> {self.out}: {doc['parameters']:,} parameters, "
            f"{doc['weights_bytes'] / 1e6:.1f} MB"
        )
        return {"policy": doc}

    def _wordnet_found(self) -> bool:
        from mmrobot.policies.wordnet import find_wordnet

        try:
            find_wordnet()
        except ConfigError:
            self.console.print("toy release: WordNet not installed, no lexicon")
            return False
        return True

    def _settings(self, splits: Sequence[str]) -> Any:
        from mmrobot.train.eval import EvalSettings

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
        from mmrobot.train.eval import evaluate

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
        write_json(self.out / EVAL_FILE, doc)
        return {}

    def _finish(self, order: list[str]) -> Path:
        from rich.table import Table

        record = release_record(self.config, self.state, order, self.toy, self.out)
        stages = record["stages"]
        write_json(self.out / RECORD_FILE, record)
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
