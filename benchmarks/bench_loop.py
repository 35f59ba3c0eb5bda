"""Control-loop timing on the HIL rig: 100 Hz commands, 20 Hz policy, in real time.

The real stack runs here: RobotSession's drivers read the HIL rig (``python -m
mmrobot.launch.hil``, its own process: Dynamixel bus, FT 300 and RPLIDAR over ptys, MJPEG
cameras) and the ControlLoop (LoopConfig(rate_hz=100, policy_rate_hz=20)) runs the policy on
the MonotonicClock, sending goal positions over the wire every 10 ms. Reported per condition:
tick start jitter (|actual - scheduled|) p50/p99/max, deadline misses (ticks that ended after
their period), skipped ticks, policy latency, the policy's age when its chunk is used, and
per-tick compute; a second table splits the tick: its CPU time (the rest of its wall time
is waiting: for a core, the GIL, a lock or I/O), the wall time of each part
(``LoopStats.tick_parts_ns``) and the goal write's bus lock wait and write (sends left with
the joint read are counted, not timed as writes). Conditions: the policy inline in the tick (the baseline), the policy in
its own thread (``loop.policy_worker = "thread"``), then the thread with a CPU-loading
neighbour process spinning on a core, then the policy in a process of its own
(``"process"``: no share of the loop's GIL), alone and with the neighbour. The loop thread
asks for SCHED_FIFO as hil.toml says; the table says what it was granted. ``--pin`` puts the
loop thread alone on the last CPU and the rig, the policy worker and the driver process
(``loop.driver_cpu_affinity``) on the others.
``--drivers thread process`` runs every condition with the rig's sensor drivers in the
loop's process and in their own (``loop.driver_worker``; default: hil.toml's "process").

The policy: an exported ONNX model run by ``mmrobot.deploy.OnnxPolicy`` when that imports
(a freshly initialized tiny fusion model is exported unless ``--policy`` names a checkpoint
folder or export), else the torch checkpoint. The table says which.

    python benchmarks/bench_loop.py --quick --json out/bench_loop.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RATE_HZ, POLICY_RATE_HZ = 100.0, 20.0


def make_policy(tmp: Path, given: str | None) -> tuple[str, str, str]:
    """(launch key, path, description) of the policy to run."""
    if given:
        p = Path(given)
        is_ckpt = p.is_dir() and (p / "model.safetensors").is_file()
        return (
            ("checkpoint" if is_ckpt else "onnx"),
            str(p),
            f"{'torch' if is_ckpt else 'ONNX'} {p}",
        )
    import torch

    from mmrobot.envs import default_stream_specs
    from mmrobot.policies import FusionPolicyModel, PolicyConfig, save_checkpoint

    torch.manual_seed(0)
    cfg = PolicyConfig.from_dict(
        {
            "model": {"width": 64, "depth": 2, "heads": 4},
            "language": {"max_len": 32},
            "camera": {"stem_channels": [8, 16], "grid": 4},
            "lidar": {"groups": 16, "group_size": 8, "hidden": 32},
            "vector": {"hidden": 64},
            "streams": [s.to_dict() for s in default_stream_specs()],
        }
    )
    model = FusionPolicyModel(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    ckpt = save_checkpoint(model, tmp / "ckpt")
    try:
        from mmrobot.deploy import OnnxPolicy, export_onnx

        del OnnxPolicy  # imported to learn that ONNX Runtime is usable
    except ImportError:
        return "checkpoint", str(ckpt), f"torch (OnnxPolicy unavailable), {n_params:,} params"
    export_onnx(ckpt, tmp / "onnx")
    return "onnx", str(tmp / "onnx"), f"ONNX Runtime FP32, fresh fusion model, {n_params:,} params"


def run_condition(session: Any, seconds: float) -> dict[str, Any]:
    out = session.execute("put the red block in the bin", max_seconds=seconds)
    s = session.loop.stats
    summary = s.summary()
    jit = np.abs(np.asarray(s.jitter_ns, np.float64)) / 1e6
    return {
        "seconds": seconds,
        "ticks": s.ticks,
        "expected_ticks": round(seconds * RATE_HZ),
        "misses": s.deadline_misses,
        "miss_pct": 100.0 * s.deadline_misses / max(1, s.ticks),
        "skipped_ticks": s.skipped_ticks,
        "jitter_p50_ms": summary["jitter_p50_ms"],
        "jitter_p99_ms": summary["jitter_p99_ms"],
        "jitter_max_ms": float(jit.max()) if len(jit) else float("nan"),
        "policy_p50_ms": summary["policy_latency_p50_ms"],
        "policy_p99_ms": summary["policy_latency_p99_ms"],
        "policy_age_p50_ms": summary["policy_age_p50_ms"],
        "policy_age_p99_ms": summary["policy_age_p99_ms"],
        "tick_p50_ms": summary["tick_compute_p50_ms"],
        "tick_p99_ms": summary["tick_compute_p99_ms"],
        "breakdown": s.breakdown(),
        "holds": s.holds,
        "hold_reasons": dict(s.hold_reasons),
        "scheduling": s.scheduling,
        "stop_reason": out.reason,
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def print_breakdown(results: dict[str, dict[str, Any]]) -> None:
    """Where each condition's tick time went: p50 / p99 ms of its CPU time and parts."""
    from mmrobot.deploy.loop_config import TICK_PARTS

    names = ["tick_cpu", *(f"tick_{p}" for p in TICK_PARTS), "send_lock_wait", "send_write"]
    cols = ["condition", "compute", "CPU", *TICK_PARTS, "send: lock wait", "send: write"]
    cols.append("sends left with the read")
    rows = []
    for label, r in results.items():
        b = r["breakdown"]
        cells = [f"{r['tick_p50_ms']:.3f} / {r['tick_p99_ms']:.2f}"]
        cells += [f"{b[f'{n}_p50_ms']:.3f} / {b[f'{n}_p99_ms']:.2f}" for n in names]
        cells.append(f"{b['sends_deferred']} of {b['sends_timed']}")
        rows.append([label, *cells])
    print_table("where the tick's time goes: p50 / p99 ms per tick", cols, rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="5 s per condition, not 60 s")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per condition")
    ap.add_argument("--policy", default=None, help="checkpoint folder or ONNX export to run")
    ap.add_argument("--no-cameras", action="store_true", help="HIL rig without camera streams")
    ap.add_argument(
        "--workers", nargs="*", choices=["inline", "thread", "process"], default=None,
        help="policy workers to measure (default: all three)",
    )  # fmt: skip
    ap.add_argument(
        "--drivers", nargs="*", choices=["thread", "process"], default=None,
        help="where the rig's sensor drivers run (loop.driver_worker): in the loop's process "
        "(thread) or in their own (process); several: each condition under each "
        "(default: hil.toml's setting)",
    )  # fmt: skip
    ap.add_argument(
        "--pin", action="store_true",
        help="pin the loop thread to the last CPU; the policy worker, the driver process and "
        "the rig to the others",
    )  # fmt: skip
    ap.add_argument("--json", default=None, metavar="PATH")
    args = ap.parse_args()
    seconds = args.seconds or (5.0 if args.quick else 60.0)

    from mmrobot.launch.hil import wait_for_rig
    from mmrobot.launch.robot import RobotSession
    from mmrobot.launch.schema import load_launch

    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        cmd = [sys.executable, "-m", "mmrobot.launch.hil", "--dir", str(tmp / "hil"), "--seed", "1"]
        if args.no_cameras:
            cmd.append("--no-cameras")
        hil = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        neighbour = None
        try:
            key, path, policy_desc = make_policy(tmp, args.policy)  # while the rig starts
            rig = wait_for_rig(tmp / "hil", timeout_s=120)
            overrides = [
                f'rig.file="{rig}"',
                # an export replaces the launch file's checkpoint ("" unsets it)
                *(
                    [f'policy.checkpoint="{path}"']
                    if key == "checkpoint"
                    else ['policy.checkpoint=""', f'policy.onnx="{path}"']
                ),
                f"loop.rate_hz={RATE_HZ}",
                f"loop.policy_rate_hz={POLICY_RATE_HZ}",
                "loop.watchdog_periods=50",
            ]
            if args.pin:  # the loop alone on the last CPU; the rig and the policy elsewhere
                cpus = sorted(os.sched_getaffinity(0))
                others = cpus[:-1] or cpus
                os.sched_setaffinity(hil.pid, set(others))
                overrides += [
                    f"loop.cpu_affinity=[{cpus[-1]}]",
                    f"loop.policy_cpu_affinity={others}",
                ]
            results: dict[str, Any] = {}
            for drivers in args.drivers or [None]:
                for worker, conditions in (("inline", ["inline (baseline)"]),
                                           ("thread", ["thread", "thread + CPU neighbour"]),
                                           ("process", ["process", "process + CPU neighbour"])):  # fmt: skip
                    if args.workers and worker not in args.workers:
                        continue
                    extra = [f'loop.policy_worker="{worker}"']
                    if drivers is not None:
                        extra.append(f'loop.driver_worker="{drivers}"')
                    launch = load_launch(ROOT / "launch" / "hil.toml", [*overrides, *extra])
                    if args.pin and launch.loop.driver_worker == "process":  # with the policy
                        loop = launch.loop.model_copy(update={"driver_cpu_affinity": others})
                        launch = launch.model_copy(update={"loop": loop})
                    session = RobotSession(launch)
                    try:
                        for name in conditions:
                            label = f"{name}, drivers: {launch.loop.driver_worker}"
                            if name.endswith("neighbour"):
                                neighbour = subprocess.Popen(
                                    [sys.executable, "-c", "while True: pass"]
                                )
                                time.sleep(0.5)
                            results[label] = run_condition(session, seconds)
                            if neighbour is not None:
                                neighbour.kill()
                                neighbour.wait()
                                neighbour = None
                    finally:
                        session.close()
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
            hil.terminate()
            try:
                hil.wait(timeout=20)
            except subprocess.TimeoutExpired:
                hil.kill()

    cols = [
        "condition",
        "ticks",
        "deadline misses",
        "skipped",
        "jitter p50 / p99 / max ms",
        "policy p50 / p99 ms",
        "policy age p50 / p99 ms",
        "tick compute p50 / p99 ms",
        "holds (by reason)",
        "load 1 min",
    ]
    rows = [
        [
            name,
            f"{r['ticks']} / {r['expected_ticks']}",
            f"{r['misses']} ({r['miss_pct']:.1f}%)",
            r["skipped_ticks"],
            f"{r['jitter_p50_ms']:.3f} / {r['jitter_p99_ms']:.2f} / {r['jitter_max_ms']:.1f}",
            f"{r['policy_p50_ms']:.1f} / {r['policy_p99_ms']:.1f}",
            f"{r['policy_age_p50_ms']:.1f} / {r['policy_age_p99_ms']:.1f}",
            f"{r['tick_p50_ms']:.2f} / {r['tick_p99_ms']:.1f}",
            f"{r['holds']} ({', '.join(f'{k} {v}' for k, v in r['hold_reasons'].items()) or '-'})",
            f"{r['loadavg_1min']:.1f}" if r["loadavg_1min"] is not None else "-",
        ]
        for name, r in results.items()
    ]
    title = (
        f"bench_loop: HIL rig, {RATE_HZ:g} Hz commands / {POLICY_RATE_HZ:g} Hz policy, "
        f"{seconds:g} s per condition; policy: {policy_desc}"
    )
    print_table(title, cols, rows)
    print_breakdown(results)
    print("loop thread scheduling:", "; ".join(sorted({r["scheduling"] for r in results.values()})))
    write_json(
        args.json,
        {
            "rate_hz": RATE_HZ,
            "policy_rate_hz": POLICY_RATE_HZ,
            "seconds": seconds,
            "policy": policy_desc,
            "cameras": not args.no_cameras,
            "pinned": args.pin,
            "results": results,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
