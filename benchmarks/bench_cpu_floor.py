"""How steady is this machine? A fixed workload at 100 Hz, timed like the control tick.

The control loop's tick has a compute target (p99 <= 2 ms, issue 14). Part of a tick's
tail is the machine's, not the tick's: the same work takes longer when a cache was cooled,
a core is shared, or the hypervisor takes it. This benchmark runs a fixed workload of the
tick's kind (small numpy operations and Python between them, about the tick's median cost)
at 100 Hz, with the scheduling the loop asks for (SCHED_FIFO 50 when granted), and reports
its thread CPU time and wall time per call: median, p90, p99, max and p99 / median.
Every call does exactly the same operations, so any spread is the machine's.

Conditions: ``idle`` (nothing else started), ``+ spinning neighbour`` (a Python process
spinning on a core, as bench_loop's CPU neighbour), ``+ numpy neighbour`` (a process doing
matrix products, as a policy or the rig's rendering would).

    python benchmarks/bench_cpu_floor.py [--seconds 30] [--ops 300] [--json PATH] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

RATE_HZ = 100.0
NEIGHBOURS = {
    "idle": None,
    "+ spinning neighbour": "while True: pass",
    "+ numpy neighbour": (
        "import numpy as np\na = np.random.rand(256, 256)\nwhile True: a = np.tanh(a @ a.T)"
    ),
}


def claim_fifo() -> str:
    """SCHED_FIFO 50 for the calling thread, as the control loop asks for its own thread
    (children forked from it would inherit it: neighbours start from the main thread)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
        return "SCHED_FIFO 50"
    except (PermissionError, AttributeError, OSError):
        return "normal (SCHED_FIFO not permitted)"


def workload(ops: int, a: np.ndarray, v: np.ndarray) -> float:
    """``ops`` rounds of a 6x6 matrix-vector product, a clip and Python arithmetic: the
    size of a tick's IK and safety steps."""
    s = 0.0
    for i in range(ops):
        x = a @ v
        s += float(x.clip(0.0, 1.0)[0]) + i
    return s


def run(seconds: float, ops: int) -> tuple[str, dict[str, np.ndarray]]:
    """Calls of ``workload`` at 100 Hz for ``seconds`` in a thread of their own with the
    loop's scheduling: (the scheduling, thread CPU and wall ms per call)."""
    out: list[tuple[str, dict[str, np.ndarray]]] = []
    worker = threading.Thread(target=lambda: out.append(_run(seconds, ops)))
    worker.start()
    worker.join()
    return out[0]


def _run(seconds: float, ops: int) -> tuple[str, dict[str, np.ndarray]]:
    scheduling = claim_fifo()
    a, v = np.random.default_rng(0).random((6, 6)), np.ones(6)
    for _ in range(20):  # warm-up
        workload(ops, a, v)
    n = int(seconds * RATE_HZ)
    cpu, wall = np.empty(n), np.empty(n)
    period = 1.0 / RATE_HZ
    due = time.monotonic()
    for k in range(n):
        due += period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        workload(ops, a, v)
        wall[k] = (time.perf_counter_ns() - w0) / 1e6
        cpu[k] = (time.thread_time_ns() - c0) / 1e6
    return scheduling, {"cpu_ms": cpu, "wall_ms": wall}


def summary(x: np.ndarray) -> dict[str, float]:
    p50, p90, p99, mx = (float(q) for q in np.quantile(x, [0.5, 0.9, 0.99, 1.0]))
    return {"p50": p50, "p90": p90, "p99": p99, "max": mx, "p99_over_p50": p99 / p50}


def steal_ticks() -> int:
    """The kernel's count of CPU time taken by the hypervisor (USER_HZ ticks, all CPUs)."""
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="per condition")
    p.add_argument("--ops", type=int, default=300, help="workload size (300: about 2 ms)")
    p.add_argument("--quick", action="store_true", help="3 s per condition")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = p.parse_args()
    seconds = 3.0 if args.quick else args.seconds
    scheduling = "?"
    rows, results = [], {}
    for name, code in NEIGHBOURS.items():
        neighbour = subprocess.Popen([sys.executable, "-c", code]) if code else None
        try:
            time.sleep(0.5 if code else 0.0)
            load, steal0 = os.getloadavg()[0], steal_ticks()
            scheduling, times = run(seconds, args.ops)
            steal = steal_ticks() - steal0
        finally:
            if neighbour is not None:
                neighbour.kill()
                neighbour.wait()
        cpu, wall = summary(times["cpu_ms"]), summary(times["wall_ms"])
        results[name] = {"cpu_ms": cpu, "wall_ms": wall, "load_1min": load, "steal_ticks": steal}
        rows.append(
            [
                name,
                f"{cpu['p50']:.2f} / {cpu['p90']:.2f} / {cpu['p99']:.2f} / {cpu['max']:.2f}",
                f"{cpu['p99_over_p50']:.1f}x",
                f"{wall['p50']:.2f} / {wall['p99']:.2f}",
                str(steal),
                f"{load:.2f}",
            ]
        )
    print_table(
        f"bench_cpu_floor: the same workload ({args.ops} ops) at 100 Hz, {seconds:g} s per "
        f"condition; {scheduling}",
        [
            "condition",
            "CPU ms p50 / p90 / p99 / max",
            "CPU p99 / p50",
            "wall ms p50 / p99",
            "steal ticks",
            "load 1 min",
        ],
        rows,
    )
    write_json(
        args.json,
        {
            "bench": "bench_cpu_floor",
            "ops": args.ops,
            "seconds": seconds,
            "scheduling": scheduling,
            "results": results,
        },
    )


if __name__ == "__main__":
    main()
