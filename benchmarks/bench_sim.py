"""Simulation speed: the tabletop env vs bare MuJoCo doing the same work, and collection rate.

Measured in one run on the same machine:
- env: control steps/s of ``TabletopEnv`` with all default sensors on (2 cameras at 96x96,
  2D lidar of 360 rays, force/torque, joints), fast visuals; each step = Cartesian IK + 25
  physics substeps + sim drivers into StreamBuffers + Synchronizer.observe.
- bare: the same model, the same 25 substeps per control step, the same renders (both
  cameras at 30 Hz) and ray casts (360 rays at 10 Hz), sensor reads, no framework around it.
- the ratio env / bare (target >= 0.8).
- env with pretty visuals (4096 shadow map, 4x MSAA), for reference.
- collection throughput (``mmrobot collect`` path, HDF5 writing included) with 1 and 2 workers.

Each speed figure is the median of repeated runs. Usage:
    python benchmarks/bench_sim.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np

from mmrobot.envs.scene import choose_gl_backend

choose_gl_backend()

import mujoco  # noqa: E402

from mmrobot.envs.collect import CollectConfig, collect  # noqa: E402
from mmrobot.envs.sensors import LidarDriver  # noqa: E402
from mmrobot.envs.tabletop import TabletopEnv  # noqa: E402

HOLD = np.array([0, 0, 0, 0, 0, 0, 1], dtype=np.float32)


def env_rate(n_steps: int, visuals: str = "fast") -> float:
    env = TabletopEnv(task="pick", render_mode=None, visuals=visuals, max_steps=10**9)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    acts = [
        np.concatenate([rng.uniform(-0.005, 0.005, 3), np.zeros(3), [1.0]]).astype(np.float32)
        for _ in range(n_steps)
    ]
    env.step(HOLD)  # renderers are created on first use
    t0 = time.perf_counter()
    for a in acts:
        env.step(a)
    dt = time.perf_counter() - t0
    env.close()
    return n_steps / dt


def bare_rate(n_steps: int, image_size: int = 96) -> float:
    """The same physics, renders and ray casts with plain MuJoCo calls."""
    probe = TabletopEnv(task="pick", render_mode=None)  # only to get the same model and state
    probe.reset(seed=0)
    m, d = probe.scene.model, probe.scene.data
    r = mujoco.Renderer(m, image_size, image_size)
    dirs = LidarDriver.planar_directions(360).reshape(-1)
    site = probe.scene.ids.lidar_site
    base = probe.scene.ids.base_body
    geomid = np.zeros(360, np.int32)
    dist = np.zeros(360)
    step_ns, cam_ns, lidar_ns = 2_000_000, round(1e9 / 30), 100_000_000
    t_ns, next_cam, next_lidar = 0, 0, 0
    sink = 0.0
    # the same first tick as the env's warm-up
    t0 = None
    for k in range(n_steps + 1):
        if k == 1:
            t0 = time.perf_counter()
        d.ctrl[:] = d.ctrl  # targets held (the env's IK output would go here)
        for _ in range(25):
            mujoco.mj_step(m, d)
            t_ns += step_ns
            if t_ns >= next_cam:
                next_cam += cam_ns
                r.update_scene(d, camera="scene_cam")
                a = r.render()
                r.update_scene(d, camera="wrist_cam")
                b = r.render()
                sink += a[0, 0, 0] + b[0, 0, 0]
            if t_ns >= next_lidar:
                next_lidar += lidar_ns
                mujoco.mj_multiRay(
                    m, d, d.site_xpos[site], dirs, None, 1, base, geomid, dist, None, 360, 2.0
                )
            sink += d.sensordata[0] + d.qpos[0]
    dt = time.perf_counter() - t0
    r.close()
    probe.close()
    return n_steps / dt


def collect_rate(workers: int, episodes: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = CollectConfig(
            tasks=("reach", "push", "pick", "place", "stack"),
            episodes=episodes,
            out=os.path.join(tmp, "d.h5"),
            workers=workers,
            keep_failed=True,
        )
        t0 = time.perf_counter()
        s = collect(cfg, progress=False)
        dt = time.perf_counter() - t0
        size = os.path.getsize(cfg.out)
    return 60.0 * s["episodes"] / dt, size / max(1, s["episodes"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs (< 30 s)")
    ap.add_argument("--json", default=None, metavar="PATH")
    args = ap.parse_args()
    steps, reps, eps = (60, 3, 2) if args.quick else (300, 5, 12)
    env_runs, bare_runs = [], []
    for _ in range(reps):  # interleaved so that load changes hit both alike
        env_runs.append(env_rate(steps))
        bare_runs.append(bare_rate(steps))
    env_sps, bare_sps = statistics.median(env_runs), statistics.median(bare_runs)
    pretty = statistics.median(
        env_rate(5 if args.quick else 40, "pretty") for _ in range(min(3, reps))
    )
    c1, bytes1 = collect_rate(1, eps)
    c2, _ = collect_rate(2, eps)
    res = {
        "env_steps_per_s": env_sps,
        "bare_mujoco_steps_per_s": bare_sps,
        "ratio_env_over_bare": env_sps / bare_sps,
        "env_pretty_visuals_steps_per_s": pretty,
        "collect_episodes_per_min_1_worker": c1,
        "collect_episodes_per_min_2_workers": c2,
        "dataset_bytes_per_episode": bytes1,
        "steps_per_run": steps,
        "repeats": reps,
        "episodes_per_collect_run": eps,
        "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }
    rows = [
        ("env (all sensors, fast visuals)", f"{env_sps:.1f} steps/s"),
        ("bare MuJoCo (same work)", f"{bare_sps:.1f} steps/s"),
        ("ratio env / bare (target >= 0.8)", f"{env_sps / bare_sps:.2f}"),
        ("env, pretty visuals", f"{pretty:.1f} steps/s"),
        ("collect, 1 worker", f"{c1:.1f} episodes/min"),
        ("collect, 2 workers", f"{c2:.1f} episodes/min"),
        ("dataset size per episode", f"{bytes1 / 1e6:.2f} MB"),
    ]
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title=f"bench_sim ({'quick' if args.quick else 'full'}; median of {reps})")
        t.add_column("measure")
        t.add_column("value", justify="right")
        for r in rows:
            t.add_row(*r)
        Console().print(t)
    except ImportError:
        for r in rows:
            print(f"{r[0]:40s} {r[1]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
