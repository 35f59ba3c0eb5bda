"""Benchmark of training throughput: the current policy design next to v0, in the same run.

v0 is the design of ``policies/release`` at commit :data:`V0_COMMIT`: that commit's own
``mmrobot`` code and the release config (``git archive`` into a temporary folder; its
``policies/default.toml`` where it has no release folder). Each
design runs in its own worker process (``PYTHONPATH`` = the v0 archive or this checkout,
``OMP_WAIT_POLICY=PASSIVE``), so that both run the same script under the same conditions;
their measurements are interleaved so that a change of load on the machine hits both.

Measures, for each design:

* training throughput (forward + backward + the AdamW step its trainer uses: fused since
  v2; lr 3e-4, ``train()`` mode) in
  samples/s at batch 32, on 1 and 2 threads (``torch.set_num_threads``): the median over
  ``--repeats`` runs of ``--steps`` steps each, after a warm-up; synthetic inputs (two
  camera images, a lidar scan with missing returns, force and joint histories) and random
  action-token targets;
* the share of the training step spent in each encoder (every child module of the model
  whose name contains "encoder") and in the transformer (``model.blocks``): each one's
  forward + backward alone, replayed on the inputs it received in a normal forward (a
  module called several times per forward, such as the shared camera encoder, is replayed
  for every call), as a percentage of the full step; "other" is the rest (embeddings,
  masks, head, loss, optimizer);
* batch-1 latency on 1 and 2 threads (the targets take the faster): torch eager ``generate`` (parallel decoding, and
  autoregressive decoding of the same config) and ONNX Runtime FP32 (``session.run`` of
  the graph from :func:`mmrobot.deploy.export.export_model`), median and p90.

The current design's ratio to v0 and the targets (training >= 5x v0 at batch 32 on 2
threads, ONNX Runtime p50 <= 3 ms, torch eager p50 <= 6 ms, autoregressive decoding >= 4x
faster than v0's) are printed with PASS/MISS. Where git or the v0 commit is unavailable
(a tarball install, a shallow clone), only the current design is measured and the ratios
are n/a.

Usage::

    python benchmarks/bench_train.py [--config policies/default.toml] [--quick]
        [--repeats 5] [--steps 3] [--latency-calls 50] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from _common import print_table, write_json  # noqa: E402

# The v0 design: the commit that policies/release was trained and shipped with (HEAD when
# this benchmark was written). Its code and config are measured, never this checkout's.
V0_COMMIT = "04d1e64"

BATCH = 32
POOL = 64  # observations collated once; steps alternate between its two halves
THREADS = (1, 2)
LATENCY_THREADS = (1, 2)  # batch-1 latency: thread sync can cost more than it saves
LR = 3e-4
INSTRUCTIONS = (
    "put the red cube in the bowl",
    "push the green block to the left",
    "stack the blue cube on the yellow one",
    "pick up the small red block",
)

TARGET_RATIO = 5.0  # current / v0 training samples/s at batch 32, 2 threads
TARGET_ORT_MS = 3.0  # ONNX Runtime FP32 batch-1 p50
TARGET_TORCH_MS = 6.0  # torch eager batch-1 p50
TARGET_AR_SPEEDUP = 4.0  # v0 / current autoregressive batch-1 p50

DESIGNS = ("v0", "current")
# The trainer's default: the current design through torch.compile (measured in full runs
# only; compilation takes about 90 s on 2 cores).
COMPILED = "current+compile"


# ------------------------------------------------------------------------------- worker side
def _percentiles(times_ms: list[float]) -> dict[str, float]:
    ordered = sorted(times_ms)
    return {
        "median_ms": statistics.median(ordered),
        "p90_ms": ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))],
        "min_ms": ordered[0],
        "n": len(ordered),
    }


def _tensors(x: Any) -> list[Any]:
    """Every tensor in a (nested) tuple/list/dict of outputs."""
    import torch

    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in _tensors(v)]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    return []


def _detached(x: Any) -> Any:
    """A copy of captured inputs cut from the graph; float tensors that needed a gradient
    still do (the transformer's input does in a real step, a camera image does not)."""
    import torch

    if isinstance(x, torch.Tensor):
        d = x.detach()
        return d.requires_grad_(True) if x.requires_grad and d.is_floating_point() else d
    if isinstance(x, (tuple, list)):
        return type(x)(_detached(v) for v in x)
    if isinstance(x, dict):
        return {k: _detached(v) for k, v in x.items()}
    return x


def _callables(module: Any) -> list[Any]:
    """The modules that forward() calls: a container's members, or the module itself."""
    from torch import nn

    if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
        return [m for child in module.children() for m in _callables(child)]
    return [module]


def _parts(model: Any) -> dict[str, list[Any]]:
    """Part name -> the modules it is made of: each encoder child, then the transformer."""
    parts = {n: _callables(c) for n, c in model.named_children() if "encoder" in n.lower()}
    blocks = getattr(model, "blocks", None)
    if blocks is None:  # a renamed stack: the first child that looks like one
        blocks = next(
            (c for n, c in model.named_children() if "transformer" in n or "blocks" in n), None
        )
    if blocks is not None:
        parts["transformer"] = _callables(blocks)
    return parts


class _Bench:
    """One design's model, optimizer and data, in a worker; ``op_*`` methods answer commands."""

    def __init__(self, config_path: Path, compile: bool = False) -> None:
        import torch
        from bench_policy import synthetic_observations

        from mmrobot.policies import FusionPolicyModel, batch_to_torch, collate
        from mmrobot.train.trainer import token_loss

        self.torch, self.token_loss = torch, token_loss
        self.config_path = config_path
        self.config = _load_config(config_path)
        torch.manual_seed(0)
        self.model = FusionPolicyModel(self.config).train()
        self.compiled = compile
        self.net = torch.compile(self.model) if compile else self.model
        try:  # the optimizer this design's trainer uses (fused AdamW since v2)
            from mmrobot.train.trainer import make_optimizer

            self.opt = make_optimizer(self.model, LR, 0.05)
        except ImportError:  # v0's trainer: plain AdamW
            self.opt = torch.optim.AdamW(self.model.parameters(), lr=LR)
        tok = self.model.tokenizer
        obs = synthetic_observations(self.config, POOL, seed=1)
        instr = [INSTRUCTIONS[i % len(INSTRUCTIONS)] for i in range(POOL)]
        pool = batch_to_torch(collate(obs, instr, self.config.streams, tok))
        self.batches = [
            {k: v[i : i + BATCH].contiguous() for k, v in pool.items()}
            for i in range(0, POOL, BATCH)
        ]
        ac = self.config.action
        gen = torch.Generator().manual_seed(2)
        shape = (BATCH, ac.horizon, ac.dim)
        self.targets = [torch.randint(0, ac.bins, shape, generator=gen) for _ in self.batches]
        self.n_step = 0
        self.batch1_np = collate(obs[:1], [INSTRUCTIONS[0]], self.config.streams, tok)
        self.batch1 = batch_to_torch(self.batch1_np)

    def _step(self) -> None:
        i = self.n_step % len(self.batches)
        self.n_step += 1
        loss, _ = self.token_loss(self.net(self.batches[i], self.targets[i]), self.targets[i])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def op_info(self) -> dict[str, Any]:
        import mmrobot

        m = self.model
        n_obs, n_act = getattr(m, "n_obs_tokens", None), getattr(m, "n_actions", None)
        return {
            "mmrobot": str(Path(mmrobot.__file__).resolve().parent),
            "config": str(self.config_path),
            "params": sum(p.numel() for p in m.parameters()),
            "tokens_observation": n_obs,
            "tokens_action": n_act,
            "parts": list(_parts(m)),
            "torch": self.torch.__version__,
        }

    def op_threads(self, n: int, warmup: int) -> dict[str, Any]:
        self.torch.set_num_threads(n)
        self.model.train()
        t0 = time.perf_counter()
        for _ in range(warmup):
            self._step()
        return {"threads": self.torch.get_num_threads(), "warmup_s": time.perf_counter() - t0}

    def op_train(self, steps: int) -> dict[str, Any]:
        self.model.train()
        t0 = time.perf_counter()
        for _ in range(steps):
            self._step()
        return {"seconds": time.perf_counter() - t0, "steps": steps}

    def op_parts(self, repeats: int) -> dict[str, Any]:
        """Forward + backward time of each part alone, on its captured inputs: median ms, and
        median share (%) of a full training step timed in the same repeat."""
        torch, model = self.torch, self.model
        model.train()
        parts = _parts(model)
        calls: dict[str, list[tuple[Any, Any, Any]]] = {name: [] for name in parts}
        handles = []
        for name, modules in parts.items():
            for mod in modules:

                def hook(m: Any, args: Any, kwargs: Any, _name: str = name) -> None:
                    calls[_name].append((m, _detached(args), _detached(kwargs)))

                handles.append(mod.register_forward_pre_hook(hook, with_kwargs=True))
        try:
            model(self.batches[0], self.targets[0])  # the graph is dropped unused
        finally:
            for h in handles:
                h.remove()

        recorded = {name: c for name, c in calls.items() if c}

        def replay(calls: list[tuple[Any, Any, Any]]) -> None:
            outs = [m(*_detached(a), **_detached(k)) for m, a, k in calls]
            ts = [t for t in _tensors(outs) if t.requires_grad]
            if ts:
                torch.stack([t.float().sum() for t in ts]).sum().backward()

        def timed_ms(fn: Any, *args: Any) -> float:
            model.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            fn(*args)
            return (time.perf_counter() - t0) * 1e3

        # Each repeat times a full step and then every part, so that a share compares
        # figures taken moments apart, whatever else the machine is doing.
        step_ms: list[float] = []
        part_ms: dict[str, list[float]] = {name: [] for name in recorded}
        for i in range(repeats + 1):  # the first one warms the replays up
            step = timed_ms(self._step) if i else 0.0
            parts_now = {name: timed_ms(replay, c) for name, c in recorded.items()}
            if i:
                step_ms.append(step)
                for name, ms in parts_now.items():
                    part_ms[name].append(ms)
        model.zero_grad(set_to_none=True)
        out = {
            name: {
                "ms": statistics.median(times),
                "calls": len(recorded[name]),
                "share_pct": 100.0 * statistics.median([t / s for t, s in zip(times, step_ms)]),
            }
            for name, times in part_ms.items()
        }
        return {"parts": out, "step_ms": statistics.median(step_ms)}

    def _batch1_latency(self, model: Any, calls: int, warmup: int) -> dict[str, float]:
        times = []
        with self.torch.inference_mode():
            for i in range(warmup + calls):
                t0 = time.perf_counter()
                model.generate(self.batch1)
                if i >= warmup:
                    times.append((time.perf_counter() - t0) * 1e3)
        return _percentiles(times)

    def op_latency_torch(self, calls: int, threads: int) -> dict[str, Any]:
        self.torch.set_num_threads(threads)
        try:
            return self._batch1_latency(self.model.eval(), calls, warmup=5)
        finally:
            self.model.train()

    def op_latency_autoregressive(self, calls: int, threads: int) -> dict[str, Any]:
        from mmrobot.policies import FusionPolicyModel

        self.torch.set_num_threads(threads)
        cfg = self.config
        cfg_ar = cfg.replace(model=dataclasses.replace(cfg.model, decoding="autoregressive"))
        self.torch.manual_seed(0)
        model = FusionPolicyModel(cfg_ar).eval()
        return self._batch1_latency(model, calls, warmup=2)

    def op_latency_onnx(self, calls: int, threads: int) -> dict[str, Any]:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise ImportError("onnxruntime is not installed; pip install onnxruntime") from e
        from mmrobot.deploy.export import export_model

        self.torch.set_num_threads(threads)
        with tempfile.TemporaryDirectory(prefix="bench-train-onnx-") as tmp:
            t0 = time.perf_counter()
            path = export_model(self.model, Path(tmp) / "policy.onnx")
            export_s = time.perf_counter() - t0
            self.model.train()
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
            # Idle threads sleep instead of spinning: other processes share these cores.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feeds = {n: self.batch1_np[n] for n in self.model.input_names}
        times = []
        for i in range(10 + calls):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            if i >= 10:
                times.append((time.perf_counter() - t0) * 1e3)
        return {**_percentiles(times), "export_s": export_s, "onnxruntime": ort.__version__}


def _load_config(path: Path) -> Any:
    """A policy config TOML file, or a checkpoint folder's config (``policies/release``)."""
    if path.is_dir():
        from mmrobot.policies import read_checkpoint_config

        return read_checkpoint_config(path)[0]
    from mmrobot.policies import load_policy_config

    return load_policy_config(path)


def _worker_main(config_path: Path, compile: bool = False) -> int:
    """Answer one JSON line per command line on stdin; the first line is the model's info."""
    # Replies go to a private copy of stdout; anything else printed (by torch, the ONNX
    # exporter, C libraries) goes to stderr and cannot corrupt them.
    replies: IO[str] = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def reply(payload: dict[str, Any]) -> None:
        replies.write(json.dumps(payload) + "\n")
        replies.flush()

    try:
        bench = _Bench(config_path, compile)
        reply(bench.op_info())
    except Exception as e:
        traceback.print_exc()
        reply({"error": f"{type(e).__name__}: {e}"})
        return 1
    for line in sys.stdin:
        cmd = json.loads(line)
        op = cmd.pop("op")
        if op == "quit":
            break
        try:
            reply(getattr(bench, f"op_{op}")(**cmd))
        except Exception as e:
            traceback.print_exc()
            reply({"error": f"{type(e).__name__}: {e}"})
    return 0


# ------------------------------------------------------------------------------- parent side
class WorkerError(RuntimeError):
    """A worker process died or could not start."""


class _Worker:
    """A worker process running one design's code (its ``PYTHONPATH``), fed one command a line."""

    def __init__(self, design: str, pythonpath: Path, config: Path, compile: bool = False) -> None:
        self.design = design
        env = dict(os.environ)
        env["PYTHONPATH"] = str(pythonpath)
        # Passive OpenMP waiting: spinning threads stall for hundreds of ms when another
        # process shares the cores (see bench_policy.py). An explicit setting wins.
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - lives as long as the worker
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--config", str(config)]
        if compile:
            cmd.append("--compile")
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self._commands: IO[str] = self.proc.stdin  # type: ignore[assignment]  # PIPE: never None
        self._replies: IO[str] = self.proc.stdout  # type: ignore[assignment]

    def stderr_tail(self, lines: int = 15) -> str:
        self._stderr.seek(0)
        return "\n".join(self._stderr.read().splitlines()[-lines:])

    def read(self) -> dict[str, Any]:
        line = self._replies.readline()
        if not line:
            code = self.proc.wait()
            raise WorkerError(
                f"the {self.design} worker exited (code {code}); its last output:\n"
                + self.stderr_tail()
            )
        return json.loads(line)

    def call(self, op: str, **kwargs: Any) -> dict[str, Any]:
        try:
            self._commands.write(json.dumps({"op": op, **kwargs}) + "\n")
            self._commands.flush()
        except BrokenPipeError:
            pass  # read() reports the exit
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(WorkerError, OSError, ValueError):
                self.call("quit")
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


def v0_unavailable_reason() -> str | None:
    """Why the v0 commit cannot be checked out here, or None when it can."""
    if shutil.which("git") is None:
        return "git is not installed"
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--git-dir"], capture_output=True, text=True
    )
    if probe.returncode:
        return f"{ROOT} is not a git checkout (installed from a tarball?)"
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{V0_COMMIT}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if probe.returncode:
        return f"commit {V0_COMMIT} is not in this checkout's history (a shallow clone?)"
    return None


def _materialize_v0(dest: Path) -> tuple[Path | None, str | None]:
    """``git archive`` v0's code and policies into ``dest``; returns (v0 config, None) or
    (None, why not)."""
    reason = v0_unavailable_reason()
    if reason:
        return None, reason
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", V0_COMMIT, "mmrobot", "policies"],
        capture_output=True,
    )
    if archive.returncode:
        return None, f"git archive {V0_COMMIT} failed: {archive.stderr.decode().strip()}"
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout)
    if untar.returncode:
        return None, f"could not unpack git archive {V0_COMMIT} into {dest}"
    release = dest / "policies" / "release"
    if (release / "config.json").is_file():
        return release, None
    return dest / "policies" / "default.toml", None


class _Run:
    """The designs' workers; a v0 worker that fails is dropped (with its reason), the
    current design's failure ends the run."""

    def __init__(self) -> None:
        self.workers: dict[str, _Worker] = {}
        self.errors: dict[str, str] = {}

    def call(self, design: str, op: str, **kwargs: Any) -> dict[str, Any] | None:
        worker = self.workers.get(design)
        if worker is None:
            return None
        try:
            out = worker.call(op, **kwargs)
        except WorkerError as e:
            self.drop(design, str(e))
            return None
        if "error" in out:
            self.errors[f"{design}.{op}"] = out["error"]
            print(f"{design}: {op} failed: {out['error']}", file=sys.stderr)
            return None
        return out

    def drop(self, design: str, reason: str) -> None:
        worker = self.workers.pop(design)
        worker.close()
        self.errors[design] = reason
        if design == "current":
            raise WorkerError(reason)
        print(f"{design} dropped: {reason}", file=sys.stderr)

    def close(self) -> None:
        for w in self.workers.values():
            w.close()


def _sizes(args: argparse.Namespace) -> dict[str, int]:
    quick = args.quick
    repeats = args.repeats or (2 if quick else 5)
    calls = args.latency_calls or (10 if quick else 50)
    return {
        "repeats": repeats,
        "steps": args.steps or (1 if quick else 3),
        "warmup": 1 if quick else 3,
        "part_repeats": 1 if quick else max(3, repeats),
        "latency_calls": calls,
        "ar_calls": max(3, calls // 5),  # v0's autoregressive decoding is slow
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    sizes = _sizes(args)
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if load_start:
        print("load average at start: " + " ".join(f"{x:.2f}" for x in load_start))
    results: dict[str, Any] = {
        "benchmark": "bench_train",
        "v0_commit": V0_COMMIT,
        "config": str(args.config),
        "batch": BATCH,
        "threads": list(THREADS),
        "latency_threads": LATENCY_THREADS,
        "lr": LR,
        "quick": args.quick,
        **sizes,
        "load_average": {"start": load_start},
    }
    designs: dict[str, dict[str, Any]] = {}
    r = _Run()
    with tempfile.TemporaryDirectory(prefix="mmrobot-v0-") as tmp:
        v0_config, v0_reason = _materialize_v0(Path(tmp))
        try:
            if v0_config is not None:
                r.workers["v0"] = _Worker("v0", Path(tmp), v0_config)
            r.workers["current"] = _Worker("current", ROOT, args.config)
            if not args.quick:
                r.workers[COMPILED] = _Worker(COMPILED, ROOT, args.config, compile=True)
            for d in list(r.workers):
                try:
                    info = r.workers[d].read()
                except WorkerError as e:
                    r.drop(d, str(e))
                    continue
                if "error" in info:
                    r.drop(d, f"could not build the model: {info['error']}")
                elif d == "v0" and not Path(info["mmrobot"]).is_relative_to(Path(tmp).resolve()):
                    r.drop(
                        d, f"its worker imported mmrobot from {info['mmrobot']}, not the archive"
                    )
                else:
                    designs[d] = {"info": info, "train": {}, "latency": {}}
            _measure(r, designs, sizes)
        finally:
            r.close()
    if v0_reason is None and "v0" in r.errors:
        v0_reason = r.errors["v0"]
    results["v0"] = {
        "measured": "v0" in designs,
        "reason": v0_reason,
        "config": f"{V0_COMMIT}:{Path(v0_config).relative_to(tmp)}" if v0_config else None,
    }
    results["designs"] = designs
    results["errors"] = r.errors
    results["ratio_vs_v0"] = {
        str(n): _ratio(designs, lambda d, n=n: d["train"].get(str(n), {}).get("samples_per_s"))
        for n in THREADS
    }
    results["ratio_vs_v0_compiled"] = {
        str(n): _ratio(
            designs,
            lambda d, n=n: d["train"].get(str(n), {}).get("samples_per_s"),
            current=COMPILED,
        )
        for n in THREADS
    }
    # Each design at its faster thread count, as a deployment would run it.
    ar = [_best_latency(designs.get(d, {}), "autoregressive") for d in DESIGNS]
    results["autoregressive_speedup_vs_v0"] = (
        ar[0]["median_ms"] / ar[1]["median_ms"] if ar[0] and ar[1] else None
    )
    results["targets"] = _targets(results)
    load_end = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    results["load_average"]["end"] = load_end
    return results


def _measure(r: _Run, designs: dict[str, dict[str, Any]], sizes: dict[str, int]) -> None:
    """Interleaved: for each thread count, v0 and current alternate repeat by repeat."""
    for n in THREADS:
        runs: dict[str, list[float]] = {d: [] for d in designs}
        for d in list(designs):
            r.call(d, "threads", n=n, warmup=sizes["warmup"])
        for i in range(sizes["repeats"]):
            order = list(designs) if i % 2 == 0 else list(reversed(designs))
            for d in order:
                out = r.call(d, "train", steps=sizes["steps"])
                if out:
                    runs[d].append(out["seconds"] / out["steps"])
        for d in list(designs):
            if d not in r.workers or not runs[d]:
                continue
            step_s = statistics.median(runs[d])
            entry: dict[str, Any] = {
                "samples_per_s": BATCH / step_s,
                "step_ms": step_s * 1e3,
                "step_ms_runs": [s * 1e3 for s in runs[d]],
            }
            # The shares are of the eager step (a compiled step has no separable parts).
            parts = None if d == COMPILED else r.call(d, "parts", repeats=sizes["part_repeats"])
            if parts:
                entry["parts"] = parts["parts"]
                entry["parts_step_ms"] = parts["step_ms"]
                entry["other_pct"] = 100.0 - sum(p["share_pct"] for p in parts["parts"].values())
            designs[d]["train"][str(n)] = entry
    for op, calls in (
        ("latency_torch", sizes["latency_calls"]),
        ("latency_autoregressive", sizes["ar_calls"]),
        ("latency_onnx", sizes["latency_calls"]),
    ):
        for n in LATENCY_THREADS:
            for d in [d for d in designs if d != COMPILED]:  # inference runs eagerly or in ORT
                out = r.call(d, op, calls=calls, threads=n)
                if out:
                    designs[d]["latency"].setdefault(str(n), {})[op.removeprefix("latency_")] = out
    for d in list(designs):
        if d not in r.workers:
            del designs[d]


def _ratio(designs: dict[str, dict[str, Any]], get: Any, current: str = "current") -> float | None:
    if "v0" not in designs or current not in designs:
        return None
    a, b = get(designs["v0"]), get(designs[current])
    return b / a if a and b else None


def _best_latency(design: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The lowest-median latency figure of ``kind`` over the thread counts (with ``threads``)."""
    found = [
        {**per[kind], "threads": int(n)}
        for n, per in design.get("latency", {}).items()
        if per.get(kind)
    ]
    return min(found, key=lambda x: x["median_ms"]) if found else None


def _targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    current = results["designs"].get("current", {})
    lat = {k: _best_latency(current, k) or {} for k in ("torch", "onnx")}

    def check(target: str, value: float | None, unit: str, met: Any) -> dict[str, Any]:
        ok = None if value is None else bool(met(value))
        return {"target": target, "value": value, "unit": unit, "met": ok}

    return [
        check(
            f"training throughput >= {TARGET_RATIO:g}x v0 at batch {BATCH}, 2 threads "
            "(the trainer's default, torch.compile)",
            results["ratio_vs_v0_compiled"].get("2"),
            "x",
            lambda v: v >= TARGET_RATIO,
        ),
        check(
            f"training throughput >= {TARGET_RATIO:g}x v0 at batch {BATCH}, 2 threads (eager)",
            results["ratio_vs_v0"].get("2"),
            "x",
            lambda v: v >= TARGET_RATIO,
        ),
        check(
            f"ONNX Runtime FP32 batch-1 p50 <= {TARGET_ORT_MS:g} ms "
            f"(at {lat['onnx'].get('threads', '?')} thread(s), the faster)",
            lat.get("onnx", {}).get("median_ms"),
            " ms",
            lambda v: v <= TARGET_ORT_MS,
        ),
        check(
            f"torch eager batch-1 p50 <= {TARGET_TORCH_MS:g} ms "
            f"(at {lat['torch'].get('threads', '?')} thread(s), the faster)",
            lat.get("torch", {}).get("median_ms"),
            " ms",
            lambda v: v <= TARGET_TORCH_MS,
        ),
        check(
            f"autoregressive decoding >= {TARGET_AR_SPEEDUP:g}x faster than v0 (batch 1)",
            results["autoregressive_speedup_vs_v0"],
            "x",
            lambda v: v >= TARGET_AR_SPEEDUP,
        ),
    ]


# ------------------------------------------------------------------------------- report
def _f(x: float | None, fmt: str = ".1f", suffix: str = "") -> str:
    return "n/a" if x is None else f"{x:{fmt}}{suffix}"


def _part_label(name: str) -> str:
    """``image_encoder`` -> ``image``: short column names."""
    return name.removesuffix("_encoders").removesuffix("_encoder")


def report(results: dict[str, Any]) -> None:
    designs = results["designs"]
    v0 = results["v0"]
    if v0["measured"]:
        print(f"v0 = commit {V0_COMMIT}'s code with {v0['config']}; current = this checkout")
    else:
        print(f"v0 not measured: {v0['reason']}; measuring the current code only (ratios n/a)")
    parts = list(dict.fromkeys(p for d in designs.values() for p in d["info"]["parts"]))
    columns = ["design", "threads", "samples/s", "ms/step", "vs v0"]
    columns += [f"{_part_label(p)} %" for p in parts] + ["other %", "params", "tokens obs + act"]
    rows = []
    for n in THREADS:
        for d, data in designs.items():
            t = data["train"].get(str(n))
            if t is None:
                continue
            info = data["info"]
            ratio = {
                "current": results["ratio_vs_v0"],
                COMPILED: results.get("ratio_vs_v0_compiled", {}),
            }.get(d, {}).get(str(n))
            shares = t.get("parts", {})
            tokens = (
                f"{info['tokens_observation']} + {info['tokens_action']}"
                if info["tokens_observation"] is not None
                else "n/a"
            )
            rows.append(
                [
                    d,
                    n,
                    _f(t["samples_per_s"]),
                    _f(t["step_ms"], ".0f"),
                    "1.00x" if d == "v0" else _f(ratio, ".2f", "x"),
                    *[_f(shares[p]["share_pct"], ".0f") if p in shares else "-" for p in parts],
                    _f(t.get("other_pct"), ".0f"),
                    f"{info['params']:,}",
                    tokens,
                ]
            )
    quick = " (quick)" if results["quick"] else ""
    print_table(
        f"training, batch {BATCH} (forward + backward + AdamW), median of "
        f"{results['repeats']} x {results['steps']} steps; % = share of the step"
        + (" (quick: rough shares)" if results["quick"] else ""),
        columns,
        rows,
    )

    def lat(x: dict[str, Any] | None) -> str:
        return "n/a" if not x else f"{x['median_ms']:.2f} / {x['p90_ms']:.2f}"

    rows = []
    for n in LATENCY_THREADS:
        for d, data in designs.items():
            if d == COMPILED:
                continue
            la = data["latency"].get(str(n), {})
            rows.append(
                [
                    d,
                    str(n),
                    lat(la.get("torch")),
                    lat(la.get("autoregressive")),
                    lat(la.get("onnx")),
                    _f(la.get("onnx", {}).get("export_s"), ".1f", " s"),
                ]
            )
    print_table(
        f"batch-1 latency, p50 / p90 ms{quick}",
        [
            "design",
            "threads",
            "torch parallel",
            "torch autoregressive",
            "ONNX Runtime FP32",
            "ONNX export",
        ],
        rows,
    )
    print(
        "autoregressive decoding speedup vs v0 (each at its faster thread count): "
        + _f(results["autoregressive_speedup_vs_v0"], ".2f", "x")
    )
    print("targets (current design):")
    for t in results["targets"]:
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[t["met"]]
        value = _f(t["value"], ".2f", t["unit"])
        print(f"  {verdict:<4}  {t['target']}: {value}")
    if results["errors"]:
        print("errors:")
        for k, v in results["errors"].items():
            print(f"  {k}: {v.splitlines()[0] if v else v}")
    la = results["load_average"]
    if la["end"]:
        print(
            "load average at start / end: "
            + " ".join(f"{x:.2f}" for x in la["start"])
            + " / "
            + " ".join(f"{x:.2f}" for x in la["end"])
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--config",
        type=Path,
        default=ROOT / "policies" / "default.toml",
        help="the current design's policy config (a TOML file or a checkpoint folder)",
    )
    p.add_argument("--quick", action="store_true", help="few repeats, for a smoke test")
    p.add_argument("--repeats", type=int, help="timed runs per design and thread count")
    p.add_argument("--steps", type=int, help="training steps per timed run")
    p.add_argument("--latency-calls", type=int, help="batch-1 calls per latency figure")
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return _worker_main(args.config, args.compile)
    args.config = args.config.resolve()
    if not args.config.exists():
        p.error(f"--config {args.config} not found; see policies/default.toml")
    for name in ("repeats", "steps", "latency_calls"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    try:
        results = run(args)
    except WorkerError as e:
        print(f"bench_train: the current design could not be measured: {e}", file=sys.stderr)
        return 1
    report(results)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
