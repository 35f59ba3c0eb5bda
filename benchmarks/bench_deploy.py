"""Benchmark of policy deployment: batch-1 latency of torch and ONNX Runtime back ends.

For a policy config (default ``policies/default.toml``; untrained weights — latency does
not depend on them), exports the policy with :func:`mmrobot.deploy.export_onnx` and measures
batch-1 p50/p99 latency over ``--calls`` calls (default 500) on ``--threads`` threads
(default 2) of:

* torch eager (``FusionPolicyModel.generate`` under ``inference_mode``) — the baseline;
* ``torch.compile`` of the same (if it compiles here; skipped with ``--quick``);
* ONNX Runtime FP32, INT8 (dynamic quantization) and FP16 sessions (``session.run``);
* ``OnnxPolicy.act`` end to end (collation, tokenization, graph, detokenization), and its
  overhead over the bare FP32 ``session.run``.

Usage::

    python benchmarks/bench_deploy.py [--quick] [--json out.json] [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Passive OpenMP waiting: with the default spin-waiting, torch's threads stall for hundreds of
# ms per call when another process shares the cores (measured here: 656 ms vs 12.6 ms median
# at 2 threads). Set before torch loads its OpenMP runtime; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from mmrobot.deploy import OnnxPolicy, OrtConfig, export_onnx
from mmrobot.policies import (
    ByteTokenizer,
    FusionPolicyModel,
    batch_to_torch,
    collate,
    load_checkpoint,
    load_policy_config,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_policy import synthetic_observations  # noqa: E402

INSTRUCTION = "put the red cube in the bowl"


def _latency(fn, calls: int, warmup: int = 10) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    t = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        t[i] = time.perf_counter() - t0
    t *= 1e3
    return {
        "p50_ms": float(np.median(t)),
        "p99_ms": float(np.percentile(t, 99)),
        "min_ms": float(t.min()),
        "calls": calls,
    }


def _dataset_batch(cfg, dataset: Path, every: int = 10) -> dict[str, np.ndarray]:
    """Observations and instructions of every ``every``-th episode of a dataset, collated."""
    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.train.data import ChunkSamples

    demos = DemoDataset(dataset)
    samples = ChunkSamples(
        demos, cfg.streams, cfg.action.horizon, episodes=list(range(0, len(demos), every))
    )
    obs, texts, _ = zip(*(samples.sample(i) for i in range(len(samples))))
    return collate(list(obs), list(texts), cfg.streams, ByteTokenizer(cfg.language.max_len))


def run(
    config: Path,
    calls: int,
    threads: int,
    quick: bool,
    checkpoint: Path | None = None,
    dataset: Path | None = None,
) -> dict[str, object]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if checkpoint is not None:
        model = load_checkpoint(checkpoint).eval()
        cfg = model.config
    else:
        cfg = load_policy_config(config)
        model = FusionPolicyModel(cfg).eval()
    obs = synthetic_observations(cfg, 1)[0]
    batch_np = collate([obs], [INSTRUCTION], cfg.streams, ByteTokenizer(cfg.language.max_len))
    batch = batch_to_torch(batch_np)
    rows: dict[str, dict[str, object]] = {}
    results: dict[str, object] = {
        "config": str(checkpoint or config),
        "weights": "checkpoint" if checkpoint else "freshly initialized",
        "threads": threads,
        "quick": quick,
        "params": model.num_parameters(),
        "rows": rows,
    }

    with torch.inference_mode():
        rows["torch eager"] = _latency(lambda: model.generate(batch), calls)
    if quick:
        rows["torch.compile"] = {"skipped": "--quick"}
    else:
        try:
            compiled = torch.compile(model.generate)
            t0 = time.perf_counter()
            with torch.inference_mode():
                compiled(batch)
                compile_s = time.perf_counter() - t0
                rows["torch.compile"] = {
                    **_latency(lambda: compiled(batch), calls),
                    "compile_s": compile_s,
                }
        except Exception as e:  # report, do not fail: compile support varies by platform
            rows["torch.compile"] = {
                "skipped": f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
            }

    # No spin-waiting, like OMP_WAIT_POLICY=PASSIVE for torch above: fair on a shared CPU.
    ort_cfg = OrtConfig(intra_op_threads=threads, inter_op_threads=1, allow_spinning=False)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = save_checkpoint(model, Path(tmp) / "ckpt")
        precisions = ("fp32", "int8") if quick else ("fp32", "int8", "fp16")
        policies = {}
        for p in precisions:
            t0 = time.perf_counter()
            side = export_onnx(ckpt, Path(tmp) / p, quantize=None if p == "fp32" else p)
            export_s = time.perf_counter() - t0
            policies[p] = OnnxPolicy(Path(tmp) / p, ort_cfg)
            rows[f"ORT {p.upper()}"] = {
                **_latency(lambda pol=policies[p]: pol.run(batch_np), calls),
                "export_s": export_s,
                "model_mb": side.model_bytes / 1e6,
            }
        pol = policies["fp32"]
        rows["OnnxPolicy.act (FP32)"] = _latency(lambda: pol.act(obs, INSTRUCTION), calls)
        # Agreement of the reduced-precision graphs with FP32: on dataset samples when given,
        # else on the one synthetic observation. One sample per run, as a robot runs it (INT8
        # dynamic quantization scales activations per run, so a batch would differ).
        agree_batch = _dataset_batch(cfg, dataset) if dataset else batch_np
        n = int(len(agree_batch["instruction_tokens"]))
        results["agreement_samples"] = n
        singles = [{k: v[i : i + 1] for k, v in agree_batch.items()} for i in range(n)]
        ref = [pol.run(s) for s in singles]
        for p in precisions[1:]:
            out = [policies[p].run(s) for s in singles]
            row = rows[f"ORT {p.upper()}"]
            row["max_abs_logit_diff"] = max(
                float(np.abs(o[0] - r[0]).max()) for o, r in zip(out, ref)
            )
            row["token_agreement"] = float(
                np.mean([(o[1] == r[1]).mean() for o, r in zip(out, ref)])
            )
    base = rows["torch eager"]["p50_ms"]
    for r in rows.values():
        if "p50_ms" in r:
            r["speedup_vs_eager"] = base / r["p50_ms"]  # type: ignore[operator]
    act, bare = rows["OnnxPolicy.act (FP32)"], rows["ORT FP32"]
    results["act_overhead_ms"] = act["p50_ms"] - bare["p50_ms"]  # type: ignore[operator]
    return results


def print_table(r: dict[str, object]) -> None:
    title = (
        f"bench_deploy: {r['config']}, batch 1, {r['threads']} threads, "
        f"{r['params']:,} params" + (" (quick)" if r["quick"] else "")
    )
    if hasattr(os, "getloadavg"):  # other work on the machine skews the medians
        title += f", load average {os.getloadavg()[0]:.1f}"
    header = ("back end", "p50 ms", "p99 ms", "min ms", "vs eager (p50)", "note")
    lines = []
    for name, row in r["rows"].items():  # type: ignore[union-attr]
        if "skipped" in row:
            lines.append((name, "-", "-", "-", "-", f"skipped: {row['skipped']}"))
            continue
        note = []
        if "compile_s" in row:
            note.append(f"compile {row['compile_s']:.1f} s")
        if "model_mb" in row:
            note.append(f"{row['model_mb']:.2f} MB, export {row['export_s']:.1f} s")
        if "token_agreement" in row:
            note.append(
                f"tokens = FP32 {row['token_agreement'] * 100:.1f}% of {r['agreement_samples']} "
                f"samples, max|dlogit| {row['max_abs_logit_diff']:.3f}"
            )
        if name.startswith("OnnxPolicy.act"):
            note.append(f"overhead over session.run {r['act_overhead_ms']:.2f} ms")
        lines.append(
            (
                name,
                f"{row['p50_ms']:.2f}",
                f"{row['p99_ms']:.2f}",
                f"{row['min_ms']:.2f}",
                f"{row['speedup_vs_eager']:.2f}x",
                "; ".join(note),
            )
        )
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for col in header:
            table.add_column(col)
        for line in lines:
            table.add_row(*line)
        Console(width=150).print(table)
    except ImportError:  # pragma: no cover
        print(title)
        for line in [header, *lines]:
            print("  ".join(str(x) for x in line))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, default=ROOT / "policies" / "default.toml")
    p.add_argument(
        "--calls", type=int, default=None, help="calls per back end (default 500; 60 with --quick)"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--quick", action="store_true", help="60 calls, no torch.compile, no FP16; < 30 s"
    )
    p.add_argument("--checkpoint", type=Path, help="trained weights (default: a fresh model)")
    p.add_argument("--dataset", type=Path, help="measure INT8/FP16 token agreement on its samples")
    p.add_argument("--json", type=Path, help="write the figures to this JSON file")
    args = p.parse_args()
    calls = args.calls or (60 if args.quick else 500)
    results = run(args.config, calls, args.threads, args.quick, args.checkpoint, args.dataset)
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
