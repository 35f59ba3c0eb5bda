"""Running a policy on the simulated robot through the real control loop.

The simulation is just another robot here: its sensor drivers fill the stream buffers, the
:class:`~mmrobot.deploy.ControlLoop` observes through the synchronizer, the policy's
end-effector actions become joint targets through the arm's Cartesian controller, the
:class:`~mmrobot.deploy.SafetyLayer` filters them, and :class:`SimArm` (the actuator)
applies them and advances the physics by one control period. The loop's clock is the
simulation clock, so a run is as fast as the CPU allows and exactly reproducible.
The controller and the layer are :class:`~mmrobot.deploy.safety.SimSafety`, the path
``mmrobot eval`` runs too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.deploy.loop import ControlLoop
from mmrobot.deploy.safety import SafetyLimits, SimSafety, limits_for_arm
from mmrobot.deploy.safety_bounds import bounds_for_model
from mmrobot.launch.schema import LaunchFile

__all__ = ["Outcome", "SimArm", "SimSession", "safety_limits_for"]


class SimArm:
    """The simulated arm as an actuator: each command is one control step of the env."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.info: dict[str, Any] = {}
        self.terminated = False
        self.truncated = False
        self.torque = True

    def send(self, command: np.ndarray) -> None:
        _, _, self.terminated, self.truncated, self.info = self.env.step(
            np.asarray(command, dtype=np.float32)
        )

    def set_torque(self, on: bool) -> None:
        self.torque = on


class _EnvClock:
    """The simulation clock of an env (read-only: the env advances it)."""

    def __init__(self, env: Any) -> None:
        self.env = env

    def now_ns(self) -> int:
        return int(self.env.t_ns)


def safety_limits_for(scene: Any, section: Any, servos: Sequence[Any] = ()) -> SafetyLimits:
    """The launch file's limits, refused where they pass the bounds of the arm model and of
    the rig's arm ``servos`` (joints only) (:mod:`mmrobot.deploy.safety_bounds`)."""
    bounds = bounds_for_model(scene.model, servos, source=str(scene.path))
    return limits_for_arm(scene.arm_range, section, bounds)


@dataclass
class Outcome:
    """How one instruction went."""

    instruction: str
    task: str
    success: bool
    steps: int
    sim_seconds: float
    wall_seconds: float
    reason: str
    policy_latency_ms: list[float] = field(default_factory=list)
    tick_ms: list[float] = field(default_factory=list)
    safety: dict[str, int] = field(default_factory=dict)
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    #: stopped by a signal (Ctrl-C, SIGTERM) before it finished; ``reason`` names the signal
    interrupted: bool = False
    #: with ``--explain``: the attribution of every policy call (``AttributionTrace.to_dict``)
    attribution: dict[str, Any] | None = None
    #: real-time runs: the loop's accounting (:meth:`LoopStats.summary`: deadline misses,
    #: skipped ticks, holds by reason, policy age at use, the scheduling granted)
    loop: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.policy_latency_ms) if self.policy_latency_ms else np.zeros(1)
        return {
            "instruction": self.instruction,
            "task": self.task,
            "success": self.success,
            "steps": self.steps,
            "sim_seconds": round(self.sim_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "reason": self.reason,
            "interrupted": self.interrupted,
            "policy_latency_p50_ms": round(float(np.percentile(lat, 50)), 3),
            "policy_latency_p99_ms": round(float(np.percentile(lat, 99)), 3),
            "safety_events": self.safety,
            **({"attribution": self.attribution} if self.attribution is not None else {}),
            **({"loop": self.loop} if self.loop is not None else {}),
        }


class SimSession:
    """A simulated robot with a policy, ready to execute instructions one after another.

    Args:
        launch: a validated launch file with ``[sim]`` and ``[policy]``.
        record_video: keep annotated frames of each instruction.
        explain: ask the policy to explain every decision (a torch checkpoint): the shares go
            into each outcome's ``attribution``, and the video frames get the attribution panel.
    """

    def __init__(
        self, launch: LaunchFile, record_video: bool = False, explain: bool = False
    ) -> None:
        if launch.sim is None or launch.policy is None:
            raise ConfigError(f"{launch.source}: a simulated run needs [sim] and [policy]")
        from mmrobot.envs.randomization import Randomization
        from mmrobot.envs.scene import choose_gl_backend
        from mmrobot.envs.sensors import SensorSuiteConfig
        from mmrobot.envs.tabletop import EnvConfig, TabletopEnv
        from mmrobot.launch.policy_loader import load_launch_policy

        choose_gl_backend()
        self.launch = launch
        sim = launch.sim
        self.policy = load_launch_policy(launch)
        cfg = EnvConfig(
            action_mode="joint",
            visuals=sim.visuals,
            xml_path=str(launch.path(sim.scene)) if sim.scene else None,
            sensors=SensorSuiteConfig(image_size=sim.image_size)
            if sim.image_size != 96
            else SensorSuiteConfig(),
        )
        if sim.randomize:
            from mmrobot.envs.randomization import Randomization

            cfg = EnvConfig(**{**cfg.__dict__, "randomization": Randomization()})
        self.env = TabletopEnv(cfg, render_mode="rgb_array" if record_video else None)
        self.record_video = record_video
        self.scene = self.env.scene
        self.arm = SimArm(self.env)
        self.explainer = None
        if explain:
            from mmrobot.launch.explain import ExplainingPolicy

            self.explainer = ExplainingPolicy(self.policy, self.env.control_period_ns)
        loop_cfg = launch.loop.loop_config(simulated=True)
        if round(1e9 / loop_cfg.rate_hz) != self.env.control_period_ns:
            raise ConfigError(
                f"{launch.source}: loop.rate_hz {loop_cfg.rate_hz} must equal the simulation's "
                f"control rate {1e9 / self.env.control_period_ns:g} Hz"
            )
        # the safety path `mmrobot eval` runs too: the same controller, limits and layer
        self.sim_safety = SimSafety(self.env, launch.safety, period_s=1 / loop_cfg.rate_hz)
        self.safety = self.sim_safety.layer
        self.loop = ControlLoop(
            self.env.synchronizer,
            self.explainer or self.policy,
            self.arm,
            self.safety,
            measure=self.sim_safety.measure,
            to_command=self.sim_safety.to_command,
            grip_force=self.sim_safety.grip_force,
            config=loop_cfg,
            clock=_EnvClock(self.env),
        )
        self._seed = sim.seed

    # -- instructions
    def execute(
        self,
        instruction: str,
        task: str | None = None,
        max_seconds: float | None = None,
        on_step: Callable[[int, dict[str, Any]], None] | None = None,
        should_stop: Callable[[], str | None] | None = None,
    ) -> Outcome:
        """Run one instruction until the task's success detector fires or time runs out.

        ``should_stop`` is asked before every tick; a reason from it (``"signal SIGINT"``)
        ends the instruction there, marked ``interrupted``."""
        max_seconds = max_seconds or self.launch.run.max_seconds
        options: dict[str, Any] = {"instruction": instruction}
        if task:
            options["task"] = task
        self.env.reset(seed=self._seed, options=options)
        self._seed += 1
        self.safety.clear()
        self.loop.stats = type(self.loop.stats)()
        self.loop.start(instruction, t_ns=self.env.t_ns)
        if self.explainer is not None:
            self.explainer.begin(self.env.t_ns)
        frames: list[np.ndarray] = []
        recorder = None
        if self.record_video:
            from mmrobot.train.video import VideoRecorder

            recorder = VideoRecorder(
                instruction, label=self.env.task.format(), explain=self.explainer is not None
            )
            recorder.add(self.env.render(), 0)
        max_steps = int(max_seconds * self.launch.loop.rate_hz)
        t0 = time.perf_counter()
        tick_ms: list[float] = []
        reason, success, steps, interrupted = "time limit", False, 0, False
        for step in range(1, max_steps + 1):
            stop = should_stop() if should_stop is not None else None
            if stop:
                reason, interrupted = stop, True
                break
            steps = step
            t_tick = time.perf_counter()
            self.loop.tick(self.env.t_ns)
            tick_ms.append((time.perf_counter() - t_tick) * 1e3)
            info = self.arm.info
            success = bool(info.get("is_success", False))
            status = "success" if success else ""
            if recorder is not None:
                shown = self.explainer.latest if self.explainer is not None else None
                recorder.add(self.env.render(), steps, status, *(shown or ()))
            if on_step:
                on_step(steps, info)
            if success:
                reason = "success"
                break
            if self.arm.truncated and info.get("reason") not in (None, "time limit"):
                reason = str(info.get("reason"))
                break
        if recorder is not None:
            frames = recorder.frames
        return Outcome(
            instruction=instruction,
            task=self.env.task.format(),
            success=success,
            steps=steps,
            sim_seconds=self.env.t_ns / 1e9,
            wall_seconds=time.perf_counter() - t0,
            reason=reason,
            policy_latency_ms=[x / 1e6 for x in self.loop.stats.policy_latency_ns],
            tick_ms=tick_ms,
            safety=self.safety.counts(),
            frames=frames,
            interrupted=interrupted,
            attribution=self.explainer.trace.to_dict() if self.explainer is not None else None,
        )

    def close(self) -> None:
        self.env.close()


def write_outputs(
    outcomes: list[Outcome],
    launch: LaunchFile,
    video: str | None,
    timing_png: str | None,
    results_json: str | None,
) -> list[Path]:
    """Video of every instruction, a control-loop timing plot and a results JSON (paths
    relative to the working directory)."""
    import json

    written: list[Path] = []
    if video:
        from mmrobot.train.video import write_video

        frames = [f for o in outcomes for f in o.frames]
        if frames:
            Path(video).parent.mkdir(parents=True, exist_ok=True)
            written.append(write_video(video, frames, fps=launch.loop.rate_hz))
    if timing_png:
        written.append(plot_timing(outcomes, Path(timing_png), budget_ms=1e3 / launch.loop.rate_hz))
    if results_json:
        path = Path(results_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([o.to_dict() for o in outcomes], indent=2))
        written.append(path)
    return written


def plot_timing(outcomes: list[Outcome], path: Path, budget_ms: float) -> Path:
    """Per-tick compute time (policy and whole tick) against the control period."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tick = np.concatenate([o.tick_ms for o in outcomes]) if outcomes else np.zeros(0)
    pol = np.concatenate([o.policy_latency_ms for o in outcomes]) if outcomes else np.zeros(0)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.5))
    a.plot(tick, lw=0.8, label="whole tick (observe, policy, IK, safety, physics)")
    a.plot(pol, lw=0.8, label="policy.act")
    a.axhline(budget_ms, color="r", ls="--", label=f"control period {budget_ms:g} ms")
    a.set(xlabel="tick", ylabel="ms", title="control-loop compute per tick")
    a.legend(fontsize=7)
    if len(tick):
        b.hist(
            tick,
            bins=40,
            alpha=0.7,
            label=f"tick p50 {np.percentile(tick, 50):.1f} / p99 {np.percentile(tick, 99):.1f} ms",
        )
        b.hist(
            pol,
            bins=40,
            alpha=0.7,
            label=f"policy p50 {np.percentile(pol, 50):.1f} / p99 {np.percentile(pol, 99):.1f} ms",
        )
    b.set(xlabel="ms", ylabel="ticks", title="distribution")
    b.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
