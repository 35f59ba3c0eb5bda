"""Benchmark of the fusion policy: size, batch-1 CPU latency, training throughput.

Measures, for a policy config (default ``policies/default.toml``: 2 cameras at 96x96, a
360-point scan, force and joint histories):

* parameter count;
* forward latency at batch 1 (``torch.set_num_threads``, default 2), median and p90 over
  repeated calls, for parallel decoding (target <= 15 ms median), autoregressive decoding
  (same sizes, one token at a time with a KV cache) and the end-to-end ``TorchPolicy.act``
  (collation + decoding + detokenization) — the ratios are against parallel decoding
  measured in the same run;
* training throughput (forward + backward + AdamW step) in samples/s at batch 64, in fp32
  and under bf16 autocast (the trainer's ``precision = "bf16"``), in alternating rounds;
  eagerly, or with ``--compile`` through ``torch.compile`` as ``mmrobot train`` runs it
  (its ``compile = true`` default; each precision compiles once, about 90 s on 2 cores, before
  the timed rounds).

With ``--variant KEY=VALUE ...`` (policy config keys, e.g. ``camera.pixel_film=true``) it
also measures the config so changed, in the same run: its parameters, its parallel batch-1
latency and its fp32 training throughput, each in rounds that alternate with the config's
own, and prints the ratios.

Usage::

    python benchmarks/bench_policy.py [--config policies/gpu.toml] [--quick] [--json out.json]
        [--compile] [--variant camera.pixel_film=true ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

# Passive OpenMP waiting: with the default spin-waiting, torch's threads stall for hundreds of
# ms per call when another process shares the cores (measured here: 656 ms vs 12.6 ms median
# at 2 threads). Set before torch loads its OpenMP runtime; an explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from mmrobot.core.errors import ConfigError
from mmrobot.core.overrides import parse_override
from mmrobot.core.types import Observation
from mmrobot.policies import (
    ByteTokenizer,
    FusionPolicyModel,
    PolicyConfig,
    TorchPolicy,
    batch_to_torch,
    collate,
    load_policy_config,
)

# The trainer module, not mmrobot.train.step: bench_train.py imports this file in its v0
# worker, whose archive has the trainer's token_loss but no step module.
from mmrobot.train.trainer import token_loss

ROOT = Path(__file__).resolve().parents[1]
TARGET_MS = 15.0


def synthetic_observations(config: PolicyConfig, n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        values, ages, valid = {}, {}, {}
        for s in config.streams:
            if s.np_dtype == np.uint8:
                v = rng.integers(0, 256, size=s.obs_shape, dtype=np.uint8)
            elif s.modality == "lidar":
                ang = np.linspace(0, 2 * np.pi, s.shape[0], endpoint=False)
                r = rng.uniform(0.3, 3.0, size=s.shape[0])
                v = np.zeros(s.obs_shape, np.float32)
                v[:, 0], v[:, 1] = r * np.cos(ang), r * np.sin(ang)
                v[rng.random(s.shape[0]) < 0.1] = 0.0  # rays without return
            else:
                v = rng.normal(size=s.obs_shape).astype(s.dtype)
            values[s.name], ages[s.name], valid[s.name] = (
                v,
                int(rng.integers(0, s.max_age_ns)),
                True,
            )
        out.append(Observation(t_ns=0, values=values, ages_ns=ages, valid=valid))
    return out


def _times_ms(fn, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {
        "median_ms": statistics.median(times),
        "p90_ms": float(np.percentile(times, 90)),
        "min_ms": min(times),
        "n": len(times),
    }


def with_overrides(cfg: PolicyConfig, overrides: list[str]) -> PolicyConfig:
    """``cfg`` with ``section.key=value`` overrides (read as TOML values), validated anew."""
    data = cfg.to_dict()
    for item in overrides:
        key, value = parse_override(item, "camera.pixel_film=true")
        section, _, name = key.partition(".")
        if not name or not isinstance(data.get(section), dict):
            raise SystemExit(f"--variant {item!r}: expected SECTION.KEY=VALUE of a policy config")
        data[section][name] = value
    try:
        return PolicyConfig.from_dict(data)
    except ConfigError as e:
        raise SystemExit(f"--variant {' '.join(overrides)}: {e}") from None


def training_step(cfg: PolicyConfig, seed: int = 0, compiled: bool = False):
    """One training step (forward + backward + AdamW) at batch 64 of a fresh model of ``cfg``
    on synthetic observations, as a function that returns the step's loss (``bf16=True``:
    under bf16 autocast, as the trainer's ``precision = "bf16"``, the loss in fp32); and the
    batch size. ``compiled``: the forward through ``torch.compile``, as the trainer runs it
    (the first call of each precision compiles)."""
    torch.manual_seed(seed)
    bs = 64
    model = FusionPolicyModel(cfg).train()
    forward = torch.compile(model) if compiled else model
    obs = synthetic_observations(cfg, bs, seed=1)
    tok = ByteTokenizer(cfg.language.max_len)
    batch = batch_to_torch(collate(obs, ["put the red cube in the bowl"] * bs, cfg.streams, tok))
    targets = torch.randint(0, cfg.action.bins, (bs, cfg.action.horizon, cfg.action.dim))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(bf16: bool = False) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(batch, targets)  # teacher forced
        loss, _ = token_loss(logits, targets)  # the trainer's loss (fp32 under autocast too)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    return step, bs


def compare(
    cfg: PolicyConfig,
    variant: PolicyConfig,
    overrides: list[str],
    quick: bool,
    compiled: bool = False,
) -> dict[str, object]:
    """The config against its variant (``cfg`` with ``overrides``), in alternating rounds (a
    change of load hits both); ``compiled``: training through ``torch.compile``."""
    tok = ByteTokenizer(cfg.language.max_len)
    obs1 = synthetic_observations(cfg, 1)
    batch1 = batch_to_torch(collate(obs1, ["put the red cube in the bowl"], cfg.streams, tok))
    models = {k: FusionPolicyModel(c).eval() for k, c in (("base", cfg), ("variant", variant))}
    steps = {
        k: training_step(c, compiled=compiled)[0] for k, c in (("base", cfg), ("variant", variant))
    }
    if compiled:
        for step in steps.values():
            step()  # compiles, outside the timed rounds
    latency: dict[str, list[float]] = {"base": [], "variant": []}
    train: dict[str, list[float]] = {"base": [], "variant": []}
    rounds, per_round, reps = (2, 2, 10) if quick else (5, 4, 40)
    for _ in range(rounds):
        for k in ("base", "variant"):
            with torch.inference_mode():
                latency[k] += _times_ms(lambda m=models[k]: m.generate(batch1), 2, reps)
            train[k] += _times_ms(steps[k], 1, per_round)
    out: dict[str, object] = {"overrides": overrides}
    for k in ("base", "variant"):
        out[k] = {
            "params": models[k].num_parameters(),
            "latency_parallel": _summary(latency[k]),
            "train_step": _summary(train[k]),
            "train_samples_per_s": 64 / (statistics.median(train[k]) / 1e3),
        }
    base, var = out["base"], out["variant"]
    out["latency_ratio"] = (
        var["latency_parallel"]["median_ms"] / base["latency_parallel"]["median_ms"]  # type: ignore[index]
    )
    out["train_ratio"] = var["train_samples_per_s"] / base["train_samples_per_s"]  # type: ignore[index]
    return out


def print_comparison(c: dict[str, object], threads: int) -> None:
    title = f"bench_policy --variant {' '.join(c['overrides'])}, {threads} threads"  # type: ignore[arg-type]
    if hasattr(os, "getloadavg"):
        title += f", load average {os.getloadavg()[0]:.1f}"
    print(title)
    print(
        f"{'':12} {'parameters':>12} {'b=1 parallel median ms':>24} {'train samples/s (b=64)':>24}"
    )
    for k in ("base", "variant"):
        r = c[k]
        print(
            f"{k:12} {r['params']:>12,} {r['latency_parallel']['median_ms']:>24.2f} "  # type: ignore[index]
            f"{r['train_samples_per_s']:>24.1f}"  # type: ignore[index]
        )
    print(f"{'ratio':12} {'':>12} {c['latency_ratio']:>23.2f}x {c['train_ratio']:>23.2f}x")


def run(config_path: Path, quick: bool, threads: int, compiled: bool = False) -> dict[str, object]:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = load_policy_config(config_path)
    cfg_par = cfg.replace(model=type(cfg.model)(**{**cfg.model.__dict__, "decoding": "parallel"}))
    cfg_ar = cfg.replace(
        model=type(cfg.model)(**{**cfg.model.__dict__, "decoding": "autoregressive"})
    )
    model = FusionPolicyModel(cfg_par).eval()
    model_ar = FusionPolicyModel(cfg_ar).eval()
    tok = ByteTokenizer(cfg.language.max_len)
    instr = "put the red cube in the bowl"
    obs1 = synthetic_observations(cfg, 1)
    batch1 = batch_to_torch(collate(obs1, [instr], cfg.streams, tok))

    results: dict[str, object] = {
        "config": str(config_path),
        "threads": threads,
        "quick": quick,
        "train_compiled": compiled,
        "params": model.num_parameters(),
        "params_autoregressive": model_ar.num_parameters(),
        "tokens_observation": model.n_obs_tokens,
        "tokens_action": model.n_actions,
    }
    reps = 20 if quick else 200
    with torch.inference_mode():
        par = _summary(_times_ms(lambda: model.generate(batch1), 5, reps))
        ar = _summary(_times_ms(lambda: model_ar.generate(batch1), 2, max(5, reps // 10)))
    policy = TorchPolicy(model)
    act = _summary(_times_ms(lambda: policy.act(obs1[0], instr), 5, reps))
    results["latency_parallel"] = par
    results["latency_autoregressive"] = ar
    results["latency_act"] = act
    results["target_parallel_ms"] = TARGET_MS
    results["meets_target"] = par["median_ms"] <= TARGET_MS

    # Training throughput at batch 64.
    step, bs = training_step(cfg_par, compiled=compiled)
    if compiled:  # each precision compiles at its first call, outside the timed rounds
        step()
        step(bf16=True)
    # fp32 and bf16 autocast in alternating rounds, so a change of load hits both alike
    rounds, per_round = (1, 3) if quick else (5, 4)
    train_ms: list[float] = []
    bf16_ms: list[float] = []
    for _ in range(rounds):
        train_ms += _times_ms(step, 1, per_round)
        bf16_ms += _times_ms(lambda: step(bf16=True), 1, per_round)
    results["train_batch"] = bs
    results["train_step"] = _summary(train_ms)
    results["train_samples_per_s"] = bs / (statistics.median(train_ms) / 1e3)
    results["train_step_bf16"] = _summary(bf16_ms)
    results["train_samples_per_s_bf16"] = bs / (statistics.median(bf16_ms) / 1e3)
    return results


def print_table(r: dict[str, object]) -> None:
    par, ar, act = r["latency_parallel"], r["latency_autoregressive"], r["latency_act"]
    base = par["median_ms"]  # type: ignore[index]
    how = "torch.compile" if r["train_compiled"] else "eager"
    rows = [
        ("parameters", f"{r['params']:,}", ""),
        ("tokens (observation + action)", f"{r['tokens_observation']} + {r['tokens_action']}", ""),
        (
            "forward b=1, parallel (median / p90 / min)",
            f"{par['median_ms']:.2f} / {par['p90_ms']:.2f} / {par['min_ms']:.2f} ms",  # type: ignore[index]
            f"1.00x  (target <= {TARGET_MS:.0f} ms: {'met' if r['meets_target'] else 'NOT met'})",
        ),
        (
            "forward b=1, autoregressive (median / p90 / min)",
            f"{ar['median_ms']:.2f} / {ar['p90_ms']:.2f} / {ar['min_ms']:.2f} ms",  # type: ignore[index]
            f"{ar['median_ms'] / base:.2f}x parallel",  # type: ignore[index]
        ),
        (
            "TorchPolicy.act b=1, parallel (median / p90 / min)",
            f"{act['median_ms']:.2f} / {act['p90_ms']:.2f} / {act['min_ms']:.2f} ms",  # type: ignore[index]
            f"{act['median_ms'] / base:.2f}x parallel",  # type: ignore[index]
        ),
        (
            f"training, batch {r['train_batch']} (fwd+bwd+AdamW, {how})",
            f"{r['train_samples_per_s']:.0f} samples/s",
            f"{r['train_step']['median_ms']:.0f} ms/step (best {r['train_step']['min_ms']:.0f})",  # type: ignore[index]
        ),
        (
            f'training, batch {r["train_batch"]}, bf16 autocast (precision = "bf16", {how})',
            f"{r['train_samples_per_s_bf16']:.0f} samples/s",
            f"{r['train_samples_per_s_bf16'] / r['train_samples_per_s']:.2f}x fp32",  # type: ignore[operator]
        ),
    ]
    title = f"bench_policy: {r['config']}, {r['threads']} threads" + (
        " (quick)" if r["quick"] else ""
    )
    if hasattr(os, "getloadavg"):  # other work on the machine skews the medians
        title += f", load average {os.getloadavg()[0]:.1f}"
    try:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for col in ("measure", "value", "note"):
            table.add_column(col)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
    except ImportError:  # pragma: no cover
        print(title)
        for row in rows:
            print(f"{row[0]:<46} {row[1]:>22}  {row[2]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", type=Path, default=ROOT / "policies" / "default.toml")
    p.add_argument("--quick", action="store_true", help="fewer repeats; finishes in < 30 s")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="write the figures to this JSON file")
    p.add_argument(
        "--compile",
        action="store_true",
        help="time training through torch.compile, as mmrobot train does (compiles first)",
    )
    p.add_argument(
        "--variant",
        nargs="+",
        metavar="SECTION.KEY=VALUE",
        help="also measure the config with these changes, in the same run (ratios)",
    )
    args = p.parse_args()
    cfg = load_policy_config(args.config)
    variant = with_overrides(cfg, args.variant) if args.variant else None  # checked first
    results = run(args.config, args.quick, args.threads, args.compile)
    print_table(results)
    if variant is not None:
        results["variant"] = compare(cfg, variant, args.variant, args.quick, args.compile)
        print_comparison(results["variant"], args.threads)  # type: ignore[arg-type]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
