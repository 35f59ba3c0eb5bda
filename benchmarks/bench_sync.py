"""Benchmark of mmrobot.sync: push and observe cost, clock-model accuracy, offline matching.

A rig of four streams (camera 96x96x3 uint8 at 30 Hz, lidar 360x3 float32 at 10 Hz, force 6
float32 at 500 Hz, joints 7 float32 at 200 Hz) over 60 s of simulated time. Each device has
its own clock, offset from the host by tens of ms and drifting by 50 ppm; each sample reaches
the host after 0.2 ms + exponential(1 ms) of transport delay.

Measured, on one core:
- push: seconds per StreamBuffer.push, per stream.
- observe: seconds per Synchronizer.observe for the whole rig, at the newest time (what a
  real-time loop does) and at past times (binary search; dataset building, replay).
- stamp error against the ground-truth measurement time: host-receive stamps minus the
  rig's fixed latency correction (the naive way) versus ClockModel stamps.
- offline matching: mmrobot's match_sets against ROS message_filters' ApproximateTime
  algorithm, re-implemented here from its description, in seconds per emitted set.

Usage: python benchmarks/bench_sync.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_time_per_call, pin_to_one_core, print_table, write_json  # noqa: E402

from mmrobot.core import StreamSpec  # noqa: E402
from mmrobot.sync import ClockModel, StreamBuffer, Synchronizer, match_sets  # noqa: E402

MS = 1_000_000
S = 1_000_000_000
MIN_DELAY_NS = 200_000  # the fixed part of the transport delay, as a rig file declares it

RIG = [
    # name, modality, shape, dtype, rate, policy, max_age, capacity, clock offset, drift ppm
    ("camera", "camera", (96, 96, 3), "uint8", 30.0, "causal", 100 * MS, 64, 31 * MS, 50.0),
    ("lidar", "lidar", (360, 3), "float32", 10.0, "causal", 250 * MS, 32, -47 * MS, -50.0),
    ("force", "force", (6,), "float32", 500.0, "interp", 20 * MS, 4096, 18 * MS, 50.0),
    ("joints", "joints", (7,), "float32", 200.0, "interp", 20 * MS, 2048, -62 * MS, 30.0),
]


def make_stream(row, seconds, rng):
    name, modality, shape, dtype, rate, policy, max_age, capacity, offset, ppm = row
    spec = StreamSpec(
        name=name,
        modality=modality,
        shape=shape,
        dtype=dtype,
        rate_hz=rate,
        policy=policy,
        max_age_ns=max_age,
        latency_ns=MIN_DELAY_NS,
    )
    n = int(rate * seconds)
    true_t = (np.arange(n) * (S / rate)).astype(np.int64) + 1 * S  # measurement, host clock
    # device clock: device = host - offset, running fast or slow by ppm
    device = true_t - offset + ((true_t - true_t[0]) * ppm * 1e-6).astype(np.int64)
    receive = true_t + MIN_DELAY_NS + rng.exponential(1 * MS, n).astype(np.int64)
    n_values = min(n, 64)  # a pool of distinct values, reused
    if np.dtype(dtype).kind == "u":
        values = rng.integers(0, 255, (n_values, *shape), dtype=dtype)
    else:
        values = rng.standard_normal((n_values, *shape)).astype(dtype)
    return spec, capacity, true_t, device, receive, values


def filled(spec, capacity, true_t, values):
    buf = StreamBuffer(spec, capacity)
    for i, t in enumerate(true_t.tolist()):
        buf.push(t, values[i % len(values)])
    return buf


def stamp_errors(true_t, device, receive, **model_kw):
    """Errors (ns) of naive receive stamps and of ClockModel stamps, in arrival order."""
    cm = ClockModel(**model_kw)
    est = np.empty_like(true_t)
    for i, (d, rx) in enumerate(zip(device.tolist(), receive.tolist())):
        cm.update(d, rx)
        est[i] = cm.to_host(d) - MIN_DELAY_NS
    naive = receive - MIN_DELAY_NS - true_t
    return naive, est - true_t


def approximate_time_baseline(streams, slop_ns, queue_size=10):
    """ROS message_filters' ApproximateTime (Python), re-implemented from its description.

    Messages arrive in receive order. Each goes into its topic's queue (oldest dropped past
    queue_size). For every other topic, the queued stamps within the slop of the new stamp
    are sorted by closeness; the combinations of those candidates are tried in that order
    and the first whose stamps all lie within the slop is emitted and removed.
    """
    arrivals = sorted(
        (rx, k, int(t))
        for k, (times, receive) in enumerate(streams)
        for t, rx in zip(times, receive)
    )
    queues: list[dict[int, int]] = [{} for _ in streams]
    emitted = 0
    for _, k, stamp in arrivals:
        q = queues[k]
        q[stamp] = stamp
        while len(q) > queue_size:
            del q[min(q)]
        candidates = []
        for j, other in enumerate(queues):
            if j == k:
                continue
            near = sorted(
                (s for s in other if abs(s - stamp) <= slop_ns), key=lambda s: abs(s - stamp)
            )
            if not near:
                break
            candidates.append((j, near))
        else:
            for combo in itertools.product(*[near for _, near in candidates]):
                stamps = [stamp, *combo]
                if max(stamps) - min(stamps) <= slop_ns:
                    del q[stamp]
                    for (j, _), s in zip(candidates, combo):
                        del queues[j][s]
                    emitted += 1
                    break
    return emitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 s of data and fewer repeats")
    parser.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--stamps-only",
        action="store_true",
        help="only the timestamp accuracy (simulated clocks: no timing, valid on a busy machine)",
    )
    args = parser.parse_args()
    seconds = 10 if args.quick else 60
    repeats = 3 if args.quick else args.repeats
    core = pin_to_one_core()
    rng = np.random.default_rng(0)
    streams = [make_stream(row, seconds, rng) for row in RIG]
    results: dict[str, object] = {"seconds_of_data": seconds, "core": core, "repeats": repeats}
    rows = []

    if not args.stamps_only:
        rows += timing_rows(streams, repeats, results)
    rows += stamp_rows(streams, results)
    if not args.stamps_only:
        rows += matching_rows(streams, repeats, results)
    title = "timestamp accuracy" if args.stamps_only else f"one core (median of {repeats})"
    print_table(
        f"bench_sync: {seconds} s of a 4-stream rig, {title}",
        ["what", "measured", "beside it"],
        rows,
    )
    write_json(args.json, {"bench": "sync", **results})


def timing_rows(streams, repeats, results) -> list[list[str]]:
    """push and observe cost (seconds per call), into ``results``."""
    rows = []
    # push cost: a fresh buffer per repeat, every sample of the run pushed in order
    push = {}
    for spec, capacity, true_t, _, _, values in streams:
        times = true_t.tolist()
        n_values = len(values)
        per_sample = []
        for _ in range(repeats):
            buf = StreamBuffer(spec, capacity)
            t0 = time.perf_counter()
            for i, t in enumerate(times):
                buf.push(t, values[i % n_values])
            per_sample.append((time.perf_counter() - t0) / len(times))
        push[spec.name] = float(np.median(per_sample))
        rows.append(
            [f"push {spec.name} {spec.shape} {spec.dtype}", f"{push[spec.name] * 1e6:.2f} µs", ""]
        )
    results["push_s"] = push

    # observe cost for the whole rig, with every buffer full
    buffers = [filled(spec, cap, true_t, values) for spec, cap, true_t, _, _, values in streams]
    sync = Synchronizer(buffers)
    t_end = int(min(s[2][-1] for s in streams))
    now = t_end + 1 * MS
    observe_now, _ = median_time_per_call(lambda: sync.observe(now), 2000, repeats)
    past_times = itertools.cycle(
        np.linspace(t_end - 900 * MS, t_end - 10 * MS, 997).astype(np.int64).tolist()
    )
    observe_past, _ = median_time_per_call(lambda: sync.observe(next(past_times)), 2000, repeats)
    hist_specs = [
        StreamSpec(**{**b.spec.to_dict(), "history": 10}) if b.spec.policy == "interp" else b.spec
        for b in buffers
    ]
    hist_buffers = [
        filled(spec, cap, true_t, values)
        for spec, (_, cap, true_t, _, _, values) in zip(hist_specs, streams)
    ]
    hist_sync = Synchronizer(hist_buffers)
    observe_hist, _ = median_time_per_call(lambda: hist_sync.observe(now), 2000, repeats)
    results["observe_s"] = {
        "realtime": observe_now,
        "past": observe_past,
        "realtime_history10": observe_hist,
    }
    rows.append(["observe rig, t = now", f"{observe_now * 1e6:.1f} µs", "target ≤ 20 µs"])
    rows.append(["observe rig, past t (search)", f"{observe_past * 1e6:.1f} µs", ""])
    rows.append(["observe rig, force+joints history 10", f"{observe_hist * 1e6:.1f} µs", ""])
    return rows


#: p99 windows (s after the first sample) and the accuracy target of the stamp table
STAMP_WINDOWS_S = ((5, 10), (10, 20), (20, 40), (40, 60))
STAMP_TARGET_MS = 0.05


def settle_s(err_ms: np.ndarray, t_s: np.ndarray) -> int | None:
    """The first whole second from which the rest of the run's p99 error meets the target."""
    return next(
        (k for k in range(int(t_s[-1])) if np.percentile(err_ms[t_s >= k], 99) <= STAMP_TARGET_MS),
        None,
    )


def stamp_rows(streams, results) -> list[list[str]]:
    """Stamp error of receive times and of ClockModel, per stream, into ``results``.

    ``settle_s``: the first whole second from which the p99 error of the rest of the run is
    within the target: how long a stream of that rate needs to be seen."""
    rows = []
    stamp = {}
    for spec, _, true_t, device, receive, _ in streams:
        naive, model = stamp_errors(true_t, device, receive)
        stamp[spec.name] = {
            "naive_p50_ms": float(np.percentile(np.abs(naive), 50) / MS),
            "naive_p99_ms": float(np.percentile(np.abs(naive), 99) / MS),
            "model_p50_ms": float(np.percentile(np.abs(model), 50) / MS),
            "model_p99_ms": float(np.percentile(np.abs(model), 99) / MS),
            "model_p99_after_5s_ms": float(
                np.percentile(np.abs(model[true_t >= true_t[0] + 5 * S]), 99) / MS
            ),
        }
        err_ms, t_s = np.abs(model) / MS, (true_t - true_t[0]) / S
        stamp[spec.name]["model_p99_window_ms"] = {
            f"{a}-{b}s": float(np.percentile(err_ms[(t_s >= a) & (t_s < b)], 99))
            for a, b in STAMP_WINDOWS_S
            if np.any((t_s >= a) & (t_s < b))
        }
        stamp[spec.name]["settle_s"] = settle_s(err_ms, t_s)
        # every pair a fit candidate (50 ms buckets, not 250): does the fit or the data limit it?
        _, small = stamp_errors(true_t, device, receive, bucket_ns=50 * MS)
        stamp[spec.name]["model_p99_after_5s_ms_bucket50"] = float(
            np.percentile(np.abs(small[t_s >= 5]), 99) / MS
        )
        stamp[spec.name]["settle_s_bucket50"] = settle_s(np.abs(small) / MS, t_s)
        e = stamp[spec.name]
        rows.append(
            [
                f"stamp error {spec.name} ({spec.rate_hz:g} Hz)",
                f"receive p50 {e['naive_p50_ms']:.3f} / p99 {e['naive_p99_ms']:.3f} ms",
                f"ClockModel p50 {e['model_p50_ms']:.4f} / p99 {e['model_p99_ms']:.4f} ms "
                f"(after 5 s: p99 {e['model_p99_after_5s_ms']:.4f}); p99 "
                + ", ".join(f"{w} {v:.4f}" for w, v in e["model_p99_window_ms"].items())
                + f"; p99 <= {STAMP_TARGET_MS} ms from {e['settle_s']} s on "
                + f"(50 ms buckets: after 5 s p99 {e['model_p99_after_5s_ms_bucket50']:.4f}, "
                + f"from {e['settle_s_bucket50']} s)",
            ]
        )
    results["stamp_error"] = stamp
    return rows


def matching_rows(streams, repeats, results) -> list[list[str]]:
    """match_sets against the ApproximateTime baseline, into ``results``."""
    rows = []
    # offline matching: ours vs ApproximateTime baseline, on the ground-truth stamps
    slop = 5 * MS
    match_buffers = [
        filled(spec, len(true_t), true_t, values) for spec, _, true_t, _, _, values in streams
    ]
    ours_runs, base_runs, n_ours, n_base = [], [], 0, 0
    for _ in range(max(1, repeats // 2)):
        t0 = time.perf_counter()
        n_ours = sum(1 for _ in match_sets(match_buffers, slop))
        ours_runs.append((time.perf_counter() - t0) / max(n_ours, 1))
        t0 = time.perf_counter()
        n_base = approximate_time_baseline([(s[2], s[4]) for s in streams], slop)
        base_runs.append((time.perf_counter() - t0) / max(n_base, 1))
    ours, base = float(np.median(ours_runs)), float(np.median(base_runs))
    results["matching"] = {
        "slop_ms": slop / MS,
        "ours_s_per_set": ours,
        "baseline_s_per_set": base,
        "ours_sets": n_ours,
        "baseline_sets": n_base,
        "speedup": base / ours,
    }
    rows.append(
        [
            f"match sets, slop {slop / MS:g} ms",
            f"match_sets {ours * 1e6:.1f} µs/set ({n_ours} sets)",
            f"ApproximateTime {base * 1e6:.1f} µs/set ({n_base} sets): {base / ours:.1f}× faster",
        ]
    )
    return rows


if __name__ == "__main__":
    main()
