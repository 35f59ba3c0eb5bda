"""The robot control tick's own work, component by component (issue 14): before and after.

    python benchmarks/bench_tick.py [--quick] [--json PATH] [--rounds N] [--rate-hz HZ]
                                    [--no-before]

A 100 Hz tick of :class:`~mmrobot.launch.robot.RobotSession` must fit in well under 2 ms
(p99). The worker runs ticks at 100 Hz (as the loop does: between ticks the process sleeps,
and the machine's other work cools the caches; back to back, ``--rate-hz 0``, the same code
is several times faster) and times each component of each tick on its own:

- ``observe``: ``Synchronizer.observe`` over the buffers of ``drivers/emulated_rig.toml``
  (two 96x96 cameras at 30 Hz, lidar at 10 Hz, F/T at 100 Hz and joints at 200 Hz with
  histories of 10), filled with synthetic samples before each tick (a policy tick's read).
- ``observe, between policy calls``: what the other ticks read, ``observe_latest`` of the
  joints (their newest sample; every stream's age and validity), as ``RobotSession``'s loop
  does; the full ``observe`` in a design without it.
- ``ik``: ``CartesianController.command`` (what ``RobotSession._to_command`` calls: the
  measured angles into the arm model, then ``Scene.command_delta_pose``, 5 damped-least-squares
  iterations) for a TCP circling 5 cm around the home pose, seeded as on a rig.
- ``safety``: ``SafetyLayer.filter`` of that command, the layer built as ``RobotSession``
  builds it (``launch/hil.toml``'s limits through ``safety_limits_for`` with the emulated
  rig's arm servos, the controller's forward kinematics): the usual tick, nothing clamped.
- ``safety, on a box face``: the same command through a second layer whose workspace floor
  is above the circle, so each command is pulled back into the box (the costly path, a
  numerical-Jacobian solve; not part of the usual tick).
- ``send``: ``ArmCommandSink.send`` of the safe command to a 7-servo Dynamixel arm: the
  Dynamixel emulator in its own process (``mmrobot emulate``) spending each byte's wire time
  at 1 Mbaud, the joint driver's reader thread polling a 7-servo Sync Read at 200 Hz on the
  same bus, as on a rig, and the GIL switch interval ``ControlLoop.run`` sets (0.5 ms).

"before" is the code of commit ``BEFORE_COMMIT`` or ``--before COMMIT`` (``git archive`` into a temporary folder),
"after" this checkout; each design runs the same worker in its own process (``PYTHONPATH``
= that tree; the emulator is always this checkout's), alternately for ``--rounds`` rounds,
and the samples of a design are pooled. Figures are wall-clock ms per call, median and p99,
and the median thread CPU time (which leaves out waiting: for the bus, the GIL or a core).
The machine's load average is printed with them: other work on a 2-core machine moves them.
Where git or the commit is unavailable only "after" runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
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
#: The tick's code before issue 14's optimizations.
BEFORE_COMMIT = "3500d606ebc93759d7ac6dc61a174d31935c776e"
BETWEEN = "observe, between policy calls"
COMPONENTS = ("observe", BETWEEN, "ik", "safety", "safety, on a box face", "send")
#: one tick's own work: the components of the usual tick, summed per tick
TICK = "tick (observe + ik + safety + send)"
TICK_PARTS = ("observe", "ik", "safety", "send")
RATE_HZ = 100.0
# what ControlLoop.run sets with a policy worker (LoopConfig.switch_interval_s): how long the
# driver's reader thread may keep the GIL from the tick thread
SWITCH_INTERVAL_S = 0.0005
# launch/hil.toml's [safety] section
SAFETY = dict(
    max_velocity_rad_s=1.5,
    max_acceleration_rad_s2=20.0,
    workspace_low_m=(-0.2, -0.7, 0.015),
    workspace_high_m=(0.9, 0.7, 0.9),
    max_gripper_force_n=25.0,
    required_streams=("joints",),
)


# ----------------------------------------------------------------------------- worker side

WARMUP = 20  # first ticks dropped (allocation, caches)


class _Samples:
    """Wall-clock and thread-CPU ms of each timed call (CPU time leaves out the time the
    thread waited: for a lock, for the GIL, or for a core the machine's other work had)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def call(self, fn: Any, *args: Any) -> Any:
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        out = fn(*args)
        t1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        self.wall.append((t1 - t0) / 1e6)
        self.cpu.append((c1 - c0) / 1e6)
        return out

    def result(self) -> dict[str, list[float]]:
        return {"wall": self.wall[WARMUP:], "cpu": self.cpu[WARMUP:]}


def _circle_actions(n: int) -> list[np.ndarray]:
    """Policy actions (EE deltas per action step) that move the TCP on a 5 cm circle."""
    from mmrobot.launch.robot import ACTION_RATE_HZ

    scale = ACTION_RATE_HZ / RATE_HZ  # the controller applies action * scale per command
    k = np.arange(n + 1)
    phase = 2 * np.pi * k / (4.0 * RATE_HZ)  # one turn in 4 s
    path = 0.05 * np.stack([np.cos(phase), np.sin(phase), np.zeros_like(phase)], axis=1)
    out = []
    for i in range(n):
        a = np.zeros(7)
        a[:3] = (path[i + 1] - path[i]) / scale
        a[6] = 1.0
        out.append(a)
    return out


def _safety_layer(scene: Any, ctrl: Any, **overrides: Any) -> Any:
    """The layer as RobotSession builds it (this tree's way)."""
    from mmrobot.deploy.safety import SafetyConfig, SafetyLayer
    from mmrobot.drivers.rig import load_rig
    from mmrobot.launch import robot
    from mmrobot.launch.sim import safety_limits_for

    servos = load_rig(ROOT / "drivers" / "emulated_rig.toml").actuators[0].servos[:-1]
    section = SafetyConfig(**{**SAFETY, **overrides})
    build = getattr(robot, "arm_safety_layer", None)
    if build is not None:  # after issue 14: the session's own builder
        return build(scene, ctrl, section, servos, 1.0 / RATE_HZ)
    return SafetyLayer(
        safety_limits_for(scene, section, servos),
        period_s=1.0 / RATE_HZ,
        forward_kinematics=ctrl.tcp_position,
    )


def _arm_rig(port: str) -> Any:
    """The emulated rig's Dynamixel joint driver and goal actuator, on ``port``."""
    from mmrobot.drivers import parse_rig
    from mmrobot.drivers.rig import load_rig

    emulated = load_rig(ROOT / "drivers" / "emulated_rig.toml")
    entries = {}
    for kind, items in (("driver", emulated.drivers), ("actuator", emulated.actuators)):
        (cfg,) = [c for c in items if c.kind == "dynamixel"]
        entry = cfg.model_dump(exclude_none=True, exclude_defaults=False)
        entry["port"] = port
        entries[kind] = [{k: v for k, v in entry.items() if k not in ("enabled",)}]
    return parse_rig(entries, source="bench_tick")


def _emulator(link: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # the emulator is the same for both designs
    emu = subprocess.Popen(
        [sys.executable, "-m", "mmrobot.cli", "emulate", "dynamixel", "--link", str(link)]
        + ["--servos", "1-7:XM430-W350", "--position-noise", "0", "--line-baud", "1000000"]
        + ["--duration", "600"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = emu.stdout.readline() if emu.stdout else ""
    if not line.startswith("dynamixel: "):
        emu.terminate()
        raise RuntimeError(f"the Dynamixel emulator did not start: {line!r}")
    return emu


class _RigBuffers:
    """The emulated rig's stream buffers, filled with synthetic samples at their rates."""

    def __init__(self) -> None:
        from mmrobot.drivers.rig import load_rig
        from mmrobot.sync import Synchronizer

        rig = load_rig(ROOT / "drivers" / "emulated_rig.toml")
        self.buffers = [b for d in rig.build_drivers() for b in d.buffers.values()]
        self.sync = Synchronizer(self.buffers)
        rng = np.random.default_rng(0)
        self.values = {
            b.spec.name: (
                rng.integers(0, 255, b.spec.shape).astype(b.spec.dtype)
                if b.spec.dtype == "uint8"
                else rng.normal(size=b.spec.shape).astype(b.spec.dtype)
            )
            for b in self.buffers
        }
        self.periods = {b.spec.name: round(1e9 / b.spec.rate_hz) for b in self.buffers}
        self.next_ns = dict.fromkeys(self.periods, 1)

    def fill(self, until_ns: int) -> None:
        for b in self.buffers:
            name = b.spec.name
            while self.next_ns[name] <= until_ns:
                b.push(self.next_ns[name], self.values[name])
                self.next_ns[name] += self.periods[name]


def worker(quick: bool, rate_hz: float) -> dict[str, Any]:
    """Runs ``n`` ticks: observe, IK, safety (and the box-face layer), send, each timed."""
    from mmrobot.envs.scene import Scene
    from mmrobot.launch.robot import ArmCommandSink, CartesianController

    sys.setswitchinterval(SWITCH_INTERVAL_S)
    n = 300 if quick else 1500
    scene = Scene(ROOT / "envs" / "tabletop.xml")
    ctrl = CartesianController(scene, RATE_HZ)
    layer = _safety_layer(scene, ctrl)
    # a second arm model for the box-face layer: its forward kinematics has its own data
    face_scene = Scene(ROOT / "envs" / "tabletop.xml")
    face_ctrl = CartesianController(face_scene, RATE_HZ)
    face = _safety_layer(face_scene, face_ctrl, workspace_low_m=(-0.2, -0.7, 0.23))
    rig_buffers = _RigBuffers()
    sync = rig_buffers.sync
    if hasattr(sync, "observe_latest"):  # after issue 14: the joints' newest sample only

        def observe_between(t_ns: int) -> Any:
            return sync.observe_latest(t_ns, ("joints",))
    else:  # before: every tick observed every stream
        observe_between = sync.observe
    samples = {c: _Samples() for c in COMPONENTS}
    valid = {"joints": True, "ft": True, "lidar": True, "scene_cam": True, "wrist_cam": True}
    with tempfile.TemporaryDirectory() as d:
        emu = _emulator(Path(d) / "dxl")
        try:
            rig = _arm_rig(str(Path(d) / "dxl"))
            (drv,) = rig.build_drivers()
            (act,) = rig.build_actuators()
            with drv, act:
                if not drv.wait_for_samples(20, timeout_s=10):
                    raise RuntimeError("no joint samples from the emulator")
                sink = ArmCommandSink(act)
                q = scene.home_qpos.copy()
                ctrl.reset(q)
                first = np.concatenate([q, [1.0]])
                layer.reset(first)
                face.reset(first)
                q_meas, q_last = q.copy(), q.copy()
                t_ns = 2_000_000_000
                rig_buffers.fill(t_ns)
                period = 1.0 / rate_hz if rate_hz > 0 else 0.0
                next_t = time.monotonic()
                gc.collect()
                for action in _circle_actions(n):
                    if period:
                        next_t += period
                        delay = next_t - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    t_ns += 10_000_000
                    rig_buffers.fill(t_ns - 1_000_000)  # arrived a little before the tick
                    samples["observe"].call(rig_buffers.sync.observe, t_ns)
                    samples[BETWEEN].call(observe_between, t_ns)
                    joints = samples["ik"].call(ctrl.command, action, q_meas, q_last)
                    command = np.concatenate([joints, [action[6]]])
                    safe = samples["safety"].call(layer.filter, t_ns, command, valid, None)
                    samples["safety, on a box face"].call(face.filter, t_ns, command, valid, None)
                    samples["send"].call(sink.send, safe)
                    q_meas, q_last = q_last, safe[:6]  # the servos are one command behind
                stats, bus = drv.stats, drv.bus
                info = {
                    "ticks": n,
                    "safety events": layer.counts(by="kind"),
                    "box-face events": face.counts(by="kind"),
                    "reader samples": stats.samples,
                    "reader timeouts": stats.timeouts,
                    # after issue 14: sends left with the reader's transaction in progress
                    "deferred writes": getattr(bus, "deferred_writes", None),
                }
        finally:
            emu.terminate()
            emu.wait(timeout=10)
    results = {c: s.result() for c, s in samples.items()}
    results[TICK] = {
        kind: [float(x) for x in np.sum([results[c][kind] for c in TICK_PARTS], axis=0)]
        for kind in ("wall", "cpu")
    }
    return {"samples": results, "info": info}


# ----------------------------------------------------------------------------- parent side


def before_unavailable_reason(commit: str = BEFORE_COMMIT) -> str | None:
    """Why ``commit`` cannot be unpacked from this checkout's history, or None.
    (``git archive`` reads the local history only: no network.)"""
    if shutil.which("git") is None:
        return "git is not installed"
    probe = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--git-dir"], capture_output=True)
    if probe.returncode:
        return f"{ROOT} is not a git checkout (installed from a tarball?)"
    probe = subprocess.run(
        ["git", "-C", str(ROOT), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
    )
    if probe.returncode:
        return f"commit {commit[:9]} is not in this checkout's history (a shallow clone?)"
    return None


def before_tree(dest: Path, commit: str = BEFORE_COMMIT) -> str | None:
    """Unpack ``commit``'s package into ``dest``; returns why not, or None."""
    reason = before_unavailable_reason(commit)
    if reason:
        return reason
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "mmrobot"], capture_output=True
    )
    if archive.returncode:
        return f"git archive {commit[:9]} failed: {archive.stderr.decode().strip()}"
    untar = subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout)
    return None if untar.returncode == 0 else f"could not unpack {commit[:9]}"


def run_worker(tree: Path, quick: bool, rate_hz: float) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
        "MMROBOT_ENVS_DIR": str(ROOT / "envs"),
    }
    cmd = [sys.executable, __file__, "--worker", "--rate-hz", str(rate_hz)]
    cmd += ["--quick"] if quick else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"worker on {tree} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    mmrobot_at = result.get("mmrobot_file", "")
    if not mmrobot_at.startswith(str(tree)):
        raise RuntimeError(f"the worker imported mmrobot from {mmrobot_at}, not {tree}")
    return result


def _stats(samples: dict[str, list[float]]) -> dict[str, float]:
    a, cpu = np.asarray(samples["wall"]), np.asarray(samples["cpu"])
    return {
        "n": int(a.size),
        "p50_ms": float(np.median(a)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "max_ms": float(a.max()),
        "cpu_p50_ms": float(np.median(cpu)),
        "cpu_p99_ms": float(np.percentile(cpu, 99)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds (default 2 quick, 3)"
    )
    p.add_argument("--no-before", action="store_true", help="time this checkout only")
    p.add_argument(
        "--before", default=BEFORE_COMMIT, metavar="COMMIT",
        help=f"the commit timed as 'before' (default {BEFORE_COMMIT[:9]}, issue 14's start)",
    )  # fmt: skip
    p.add_argument(
        "--rate-hz",
        type=float,
        default=RATE_HZ,
        help="ticks per second (0: back to back, with warm caches: optimistic)",
    )
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        import mmrobot

        result = worker(args.quick, args.rate_hz)
        result["mmrobot_file"] = str(Path(mmrobot.__file__).resolve())
        print(json.dumps(result))
        return

    rounds = args.rounds or (2 if args.quick else 3)
    with tempfile.TemporaryDirectory() as d:
        designs: dict[str, Path] = {}
        why_not = "--no-before" if args.no_before else before_tree(Path(d), args.before)
        if why_not is None:
            designs["before"] = Path(d)
        else:
            print(f"before: not measured ({why_not})")
        designs["after"] = ROOT
        pooled: dict[str, dict[str, dict[str, list[float]]]] = {k: {} for k in designs}
        info: dict[str, list[Any]] = {k: [] for k in designs}
        loads: list[dict[str, Any]] = []
        per_round: list[dict[str, Any]] = []
        for r in range(rounds):
            for name, tree in designs.items():
                load0 = os.getloadavg()
                res = run_worker(tree, args.quick, args.rate_hz)
                loads.append({"round": r, "design": name, "start": load0, "end": os.getloadavg()})
                for comp, samples in res["samples"].items():
                    into = pooled[name].setdefault(comp, {"wall": [], "cpu": []})
                    into["wall"] += samples["wall"]
                    into["cpu"] += samples["cpu"]
                per_round.append(
                    {
                        "round": r,
                        "design": name,
                        "p50_ms": {
                            c: float(np.median(x["wall"])) for c, x in res["samples"].items()
                        },
                    }
                )
                info[name].append(res["info"])

    stats = {name: {c: _stats(s) for c, s in comps.items()} for name, comps in pooled.items()}
    load_1m = [x for rec in loads for x in (rec["start"][0], rec["end"][0])]
    title = (
        f"Tick components, ms per call (p50 / p99), {rounds} round(s); load average (1 min) "
        f"{min(load_1m):.2f}-{max(load_1m):.2f} during the run, {os.cpu_count()} CPUs"
    )
    names = list(designs)
    both = len(names) == 2
    columns = ["component"] + [f"{n} p50 / p99" for n in names]
    columns += ["after/before p50, p99"] if both else []
    columns += [f"{n} CPU p50 / p99" for n in names]
    rows = []
    for comp in (*COMPONENTS, TICK):
        row: list[Any] = [comp]
        for n in names:
            s = stats[n][comp]
            row.append(f"{s['p50_ms']:.3f} / {s['p99_ms']:.3f}")
        if both:
            b, a = stats["before"][comp], stats["after"][comp]
            row.append(f"{a['p50_ms'] / b['p50_ms']:.2f}, {a['p99_ms'] / b['p99_ms']:.2f}")
        for n in names:
            s = stats[n][comp]
            row.append(f"{s['cpu_p50_ms']:.3f} / {s['cpu_p99_ms']:.3f}")
        rows.append(row)
    print_table(title, columns, rows)
    for n in names:
        print(f"{n}: {json.dumps(info[n][-1])}")
    write_json(
        args.json,
        {
            "benchmark": "bench_tick",
            "before_commit": args.before if "before" in designs else None,
            "quick": args.quick,
            "rounds": rounds,
            "rate_hz": args.rate_hz,
            "load_average": loads,
            "per_round": per_round,
            "stats": stats,
            "info": info,
        },
    )


if __name__ == "__main__":
    main()
