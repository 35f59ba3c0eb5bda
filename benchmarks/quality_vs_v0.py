"""Learning quality of the current policy design next to v0: same episodes, same step budget.

The lean design must not learn worse than the v0 design it replaced (issue 11). Both
trainers run here, each with its own code in its own process (v0: the code of commit
``bench_train.V0_COMMIT`` from ``git archive``, as in ``bench_train.py``; the current
design: this checkout), through each version's own ``mmrobot train`` and
``policies/train_default.toml``, on the same demonstration episodes with the same batch size
(32), step budget, learning rate, seed, threads (2) and uniform action bins, so that their
token cross-entropy and token accuracy compare directly.

v0 reads dataset format 1, so it trains on a copy of the dataset with what format 2 added
removed (the ``ee_pose`` stream and the ``aux`` targets). The current design trains with
its default config, ``ee_pose`` and the auxiliary heads included, because that is the design
being shipped; its reported loss is the action-token cross-entropy alone. The current design
trains eagerly here (``compile=false``): compilation changes speed, not what is learned.

Reported per design: the mean training loss and token accuracy over the last 10 % of the
logged steps, the first logged loss, and the wall time.

Usage::

    python benchmarks/quality_vs_v0.py --dataset DEMOS.h5 [--steps 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, print_table, write_json
from bench_train import V0_COMMIT, _materialize_v0

ROOT = Path(__file__).resolve().parents[1]


def _v1_copy(src: Path, dst: Path) -> None:
    """A format-1 copy of a format-2 dataset: no ``ee_pose`` stream, no ``aux`` targets."""
    import h5py

    shutil.copyfile(src, dst)
    with h5py.File(dst, "r+") as f:
        specs = [s for s in json.loads(f.attrs["stream_specs"]) if s["name"] != "ee_pose"]
        f.attrs["stream_specs"] = json.dumps(specs)
        f.attrs["format_version"] = 1
        for key in f["episodes"]:
            g = f["episodes"][key]
            for part in ("values", "ages_ns", "valid"):
                if "ee_pose" in g["obs"][part]:
                    del g["obs"][part]["ee_pose"]
            if "aux" in g:
                del g["aux"]


def _train(code: Path, dataset: Path, out: Path, steps: int, extra: list[str]) -> dict[str, Any]:
    """Run one version's ``mmrobot train`` and summarize its metrics.jsonl."""
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [
        sys.executable,
        "-c",
        "import sys; from mmrobot.cli import main; sys.exit(main())",
        "train",
        str(code / "policies" / "train_default.toml"),
        f"dataset={dataset}",
        f"out={out}",
        f"steps={steps}",
        "batch_size=32",
        "lr=3e-4",
        "seed=0",
        "threads=2",
        "action_binning=uniform",
        f"save_every={steps}",
        "log_every=10",
        *extra,
    ]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=code, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode:
        raise RuntimeError(f"training failed ({code}):\n{done.stderr[-2000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train = [r for r in rows if r.get("kind") == "train"]
    tail = train[-max(1, len(train) // 10) :]
    return {
        "first_loss": train[0]["loss"],
        "final_loss": sum(r["loss"] for r in tail) / len(tail),
        "final_token_accuracy": sum(r["token_accuracy"] for r in tail) / len(tail),
        "wall_s": wall,
        "logged_steps": [r["step"] for r in tail],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", type=Path, required=True, help="a format-2 dataset")
    p.add_argument("--steps", type=int, default=300, help="training steps of each design")
    p.add_argument("--json", help="write the figures to this JSON file")
    args = p.parse_args(argv)
    if not args.dataset.is_file():
        p.error(f"--dataset {args.dataset} not found; make one with mmrobot collect")
    load = list(os.getloadavg())
    results: dict[str, Any] = {
        "benchmark": "quality_vs_v0",
        "v0_commit": V0_COMMIT,
        "dataset": str(args.dataset),
        "steps": args.steps,
        "machine": machine(),
        "load_average": {"start": load},
        "designs": {},
    }
    with tempfile.TemporaryDirectory(prefix="mmrobot-quality-") as tmp:
        tmp_path = Path(tmp)
        code = tmp_path / "v0"
        code.mkdir()
        _, reason = _materialize_v0(code)
        if reason:
            print(f"v0 not available: {reason}", file=sys.stderr)
            return 1
        v1 = tmp_path / "demos_v1.h5"
        _v1_copy(args.dataset, v1)
        designs = {
            "v0": (code, v1, []),
            "current": (ROOT, args.dataset.resolve(), ["compile=false"]),
        }
        for name, (src, data, extra) in designs.items():
            print(f"training {name} for {args.steps} steps ...", flush=True)
            results["designs"][name] = _train(src, data, tmp_path / name, args.steps, extra)
    results["load_average"]["end"] = list(os.getloadavg())
    d = results["designs"]
    rows = [
        [
            name,
            f"{r['first_loss']:.3f}",
            f"{r['final_loss']:.3f}",
            f"{r['final_token_accuracy']:.3f}",
            f"{r['wall_s']:.0f} s",
        ]
        for name, r in d.items()
    ]
    print_table(
        f"same episodes, {args.steps} steps at batch 32, uniform bins; final = mean of the last "
        "10 % of logged steps",
        ["design", "first loss", "final loss", "final token accuracy", "wall time"],
        rows,
    )
    not_worse = (
        d["current"]["final_loss"] <= d["v0"]["final_loss"]
        and d["current"]["final_token_accuracy"] >= d["v0"]["final_token_accuracy"]
    )
    results["current_not_worse"] = not_worse
    print(f"current loss <= v0 and token accuracy >= v0: {'PASS' if not_worse else 'MISS'}")
    print(
        "load average start / end: "
        + " / ".join(
            " ".join(f"{x:.2f}" for x in results["load_average"][k]) for k in ("start", "end")
        )
    )
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
