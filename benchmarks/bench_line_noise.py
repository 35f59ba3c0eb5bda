"""Drivers under line noise: RPLIDAR turns and wrong points, Dynamixel joint-stream rate.

    python benchmarks/bench_line_noise.py [--seconds S] [--rate P] [--seed N] [--json PATH]

Each emulator replaces a byte it sends with a random other value with probability P (default
0.001, i.e. 0.1 %), and the real driver reads it over a pty:

1. RPLIDAR A1 at 10 Hz, 360 nodes a turn: turns sent against scans published, nodes
   rejected by kind, and published points more than 0.3 m off the room's walls.
2. Dynamixel arm of 7 XM430-W350 with 1 Mbaud wire time, the 200 Hz joint stream while an
   actuator on the same bus sends goals at 100 Hz: stream rate, longest gap between samples
   (in 5 ms periods), bus timeouts and corrupted replies, and how long goal writes took
   (waiting for the bus included).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from mmrobot.drivers import parse_rig
from mmrobot.drivers.emulators import DynamixelEmulator, Room, RplidarEmulator


def _room_error_m(points: np.ndarray, room: Room) -> np.ndarray:
    rows = points[np.any(points != 0, axis=1)]
    ang, r = np.arctan2(rows[:, 1], rows[:, 0]), np.hypot(rows[:, 0], rows[:, 1])
    half = np.deg2rad(1 / 128)  # angles go out rounded to 1/64 degree
    return np.min([np.abs(r - room.ranges(ang + k * half)) for k in (-1, 0, 1)], axis=0)


def bench_rplidar(seconds: float, rate: float, seed: int) -> dict:
    room = Room()
    with tempfile.TemporaryDirectory() as tmp:
        emu = RplidarEmulator(
            room, link=Path(tmp) / "lidar", corrupt_rate=rate, corrupt_mode="byte", seed=seed
        )
        with emu:
            entry = {"kind": "rplidar", "name": "l", "port": emu.port, "response_timeout_s": 5.0}
            (drv,) = parse_rig({"driver": [entry]}).build_drivers()
            with drv:
                time.sleep(seconds)
                _, clouds = drv.buffers["lidar"].window(0, 2**62)
                nodes = drv.node_stats
            turns = emu.nodes_sent // emu.samples_per_rev
            corrupted = emu.bytes_corrupted
    errors = np.concatenate([_room_error_m(c, room) for c in clouds]) if len(clouds) else []
    return {
        "seconds": seconds,
        "bytes_corrupted": corrupted,
        "turns_sent": turns,
        "scans": drv.scans,
        "check_bit_errors": nodes.check_bit_errors,
        "step_errors": nodes.step_errors,
        "spikes": nodes.spikes,
        "false_starts_ignored": nodes.false_starts,
        "points_over_0.3m_off": int(np.sum(np.asarray(errors) > 0.3)),
        "worst_point_error_m": float(np.max(errors)) if len(errors) else 0.0,
    }


def bench_dynamixel(seconds: float, rate: float, seed: int) -> dict:
    servos = [{"id": i, "model": "XM430-W350", "joint": f"j{i}"} for i in range(1, 8)]
    arm = [(s["id"], s["model"]) for s in servos]
    with tempfile.TemporaryDirectory() as tmp:
        emu = DynamixelEmulator(
            arm,
            link=Path(tmp) / "dxl",
            corrupt_rate=rate,
            corrupt_mode="byte",
            seed=seed,
            line_baud=1_000_000,
        )
        with emu:
            common = {"kind": "dynamixel", "port": emu.port, "servos": servos}
            rig = parse_rig(
                {"driver": [{**common, "name": "arm"}], "actuator": [{**common, "name": "goal"}]}
            )
            (drv,) = rig.build_drivers()
            (act,) = rig.build_actuators()
            waits_ms: list[float] = []
            with drv, act:
                drv.wait_for_samples(20, timeout_s=10)
                t_start = drv.clock.now_ns()
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    t0 = time.perf_counter()
                    act.send(np.zeros(7))
                    waits_ms.append((time.perf_counter() - t0) * 1e3)
                    time.sleep(0.01)
                times, _ = drv.buffers["joints"].window(t_start, 2**62)
                bus = drv.bus
                timeouts, corrupt, attempts = bus.timeouts, bus.corrupt_replies, bus.attempts
                failed_polls = drv.stats.timeouts
            corrupted = emu.bytes_corrupted
    period_ns = 5_000_000
    span_s = (times[-1] - times[0]) / 1e9 if len(times) > 1 else 0.0
    gaps = np.diff(times) / period_ns if len(times) > 1 else np.zeros(1)
    waits = sorted(waits_ms)
    return {
        "seconds": seconds,
        "bytes_corrupted": corrupted,
        "samples": len(times),
        "rate_hz": (len(times) - 1) / span_s if span_s > 0 else 0.0,
        "max_gap_periods": float(gaps.max()),
        "gaps_over_3_periods": int(np.sum(gaps > 3)),
        "failed_polls": failed_polls,
        "bus_attempts": attempts,
        "bus_timeouts": timeouts,
        "bus_corrupt_replies": corrupt,
        "goal_write_ms_median": statistics.median(waits) if waits else 0.0,
        "goal_write_ms_max": waits[-1] if waits else 0.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=0.001, help="byte corruption probability")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    out = {
        "corrupt_rate": args.rate,
        "rplidar": bench_rplidar(args.seconds, args.rate, args.seed),
        "dynamixel": bench_dynamixel(args.seconds, args.rate, args.seed),
    }
    for dev in ("rplidar", "dynamixel"):
        print(f"{dev} at {100 * args.rate:g} % byte corruption")
        for k, v in out[dev].items():
            print(f"  {k:24s} {v:.3f}" if isinstance(v, float) else f"  {k:24s} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
