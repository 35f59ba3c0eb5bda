"""Running a policy on a rig (a real robot, or the HIL rig) through the real control loop.

:class:`RobotSession` builds the rig file's drivers and the arm's actuator, a
:class:`~mmrobot.sync.Synchronizer` over the drivers' buffers, the policy, a Cartesian
controller and the :class:`~mmrobot.deploy.SafetyLayer`, and runs the
:class:`~mmrobot.deploy.ControlLoop` in real time on the :class:`~mmrobot.core.MonotonicClock`.

The Cartesian controller uses a MuJoCo model of the arm as a kinematics library: before each
IK solve the measured joint angles are written into the model (``mj_kinematics``, no physics
is stepped) and :meth:`~mmrobot.envs.scene.Scene.command_delta_pose` turns the policy's
end-effector delta into joint targets with the same semantics as in simulation (the target
accumulates deltas, leashed to the measured pose; IK seeded with the last command sent). The
policy's deltas are per action step of ``ACTION_RATE_HZ`` (the simulation's control rate the
policy was trained at); when commands run faster, each command moves its share.

Gripper: the loop's gripper command in ``[0 closed, 1 open]`` maps linearly onto the gripper
servo's ``[min, max]`` from the rig file, and back for the measured state.

There is no success detector on a real robot unless one is given: an instruction runs until
``max_seconds`` or Ctrl-C and its outcome is ``"completed"``. Between instructions the arm
keeps holding its last safe command (torque stays on); Ctrl-C or the watchdog stops it in a
controlled way (hold, then torque off), after which the session refuses further instructions.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from mmrobot.core.clock import Clock, MonotonicClock
from mmrobot.core.errors import ConfigError, DeviceTimeoutError, LifecycleError
from mmrobot.core.types import Observation
from mmrobot.deploy.loop import ControlLoop
from mmrobot.deploy.safety import SafetyLayer
from mmrobot.launch.ft_feed import FtOrientationFeed
from mmrobot.launch.schema import LaunchFile
from mmrobot.launch.sim import Outcome, safety_limits_for

__all__ = [
    "ACTION_RATE_HZ",
    "ArmCommandSink",
    "CartesianController",
    "FtOrientationFeed",
    "RobotSession",
    "arm_safety_layer",
]

_log = logging.getLogger(__name__)

#: Action steps per second the policies are trained with (the simulation's control rate).
ACTION_RATE_HZ = 20.0


class ArmCommandSink:
    """The loop's joint-space command ``[q (n,) rad, gripper in [0, 1]]`` -> the arm actuator's
    units ``[q, gripper servo value]`` (a :class:`~mmrobot.drivers.dynamixel.DynamixelActuator`
    or any actuator with ``send``, ``set_torque`` and ``config.servos``)."""

    def __init__(self, actuator: Any) -> None:
        servos = getattr(actuator.config, "servos", None)
        if not servos or len(servos) < 2:
            raise ConfigError(
                f"actuator {actuator.name!r}: the arm needs its joint servos followed by a "
                "gripper servo in the rig file"
            )
        g = servos[-1]
        if g.min is None or g.max is None or g.min >= g.max:
            raise ConfigError(
                f"actuator {actuator.name!r}: the gripper servo (id {g.id}, last in `servos`) "
                "needs `min` (closed) < `max` (open) in the rig file"
            )
        self.actuator = actuator
        self.n_joints = len(servos) - 1
        self.gripper_min, self.gripper_max = float(g.min), float(g.max)
        self.last_sent: np.ndarray | None = None

    def gripper_fraction(self, value: float) -> float:
        """Gripper servo value (its unit) -> command fraction in [0, 1]."""
        return float(
            np.clip((value - self.gripper_min) / (self.gripper_max - self.gripper_min), 0, 1)
        )

    def send(self, command: np.ndarray) -> None:
        c = np.asarray(command, np.float64)
        g = self.gripper_min + float(np.clip(c[-1], 0, 1)) * (self.gripper_max - self.gripper_min)
        out = np.concatenate([c[: self.n_joints], [g]])
        self.actuator.send(out)
        self.last_sent = c.copy()

    def set_torque(self, on: bool) -> None:
        self.actuator.set_torque(on)

    @property
    def last_send_ns(self) -> tuple[int, int] | None:
        """The actuator's (lock wait, write) ns of its last send, where it reports them."""
        return getattr(self.actuator, "last_send_ns", None)


class _TimedSync:
    """The synchronizer, noting when each tick starts (its first call is ``observe``)."""

    def __init__(self, sync: Any, clock: Clock) -> None:
        self.sync = sync
        self.clock = clock
        self.last_observe_ns = 0

    @property
    def specs(self) -> Any:
        return self.sync.specs

    def observe(self, t_ns: int) -> Observation:
        self.last_observe_ns = self.clock.now_ns()
        return self.sync.observe(t_ns)

    def observe_latest(self, t_ns: int, streams: Any) -> Observation:
        self.last_observe_ns = self.clock.now_ns()
        return self.sync.observe_latest(t_ns, streams)


class CartesianController:
    """End-effector delta actions -> joint targets, on a MuJoCo model of the arm.

    Args:
        scene: a :class:`~mmrobot.envs.scene.Scene` used only for kinematics.
        command_rate_hz: the loop's command rate.
        action_rate_hz: action steps per second the policy's deltas refer to.
    """

    def __init__(
        self, scene: Any, command_rate_hz: float, action_rate_hz: float = ACTION_RATE_HZ
    ) -> None:
        import mujoco

        self.scene = scene
        self.mj = mujoco
        self.delta_scale = action_rate_hz / command_rate_hz
        self._fk_data = mujoco.MjData(scene.model)

    def set_measured(self, q: np.ndarray) -> None:
        """Write measured arm angles (n,) into the model and update its kinematics."""
        s = self.scene
        s.data.qpos[s.ids.arm_qpos] = q
        self.mj.mj_kinematics(s.model, s.data)

    def reset(self, q: np.ndarray) -> None:
        """Start an instruction from the measured angles: target = the measured TCP pose."""
        self.scene.reset_arm(np.asarray(q, np.float64))

    def command(self, action: np.ndarray, q_measured: np.ndarray, q_last: np.ndarray) -> np.ndarray:
        """(6,) joint targets for one command of ``action[:6]`` (an EE delta per action step)."""
        s = self.scene
        self.set_measured(q_measured)
        s.data.ctrl[s.ids.arm_act] = q_last  # IK starts from what was really sent
        return s.command_delta_pose(np.asarray(action[:6], np.float64) * self.delta_scale)

    def tcp_position(self, q: np.ndarray) -> np.ndarray:
        """Forward kinematics: TCP position (3,) in the base frame for angles (n,)."""
        s, d = self.scene, self._fk_data
        d.qpos[s.ids.arm_qpos] = q
        self.mj.mj_kinematics(s.model, d)
        return d.site_xpos[s.ids.tcp_site].copy()


def arm_safety_layer(
    scene: Any, controller: CartesianController, section: Any, servos: Any, period_s: float
) -> SafetyLayer:
    """The safety layer of a rig's arm, as :class:`RobotSession` builds it.

    The launch file's ``[safety]`` ``section``, refused where it passes the bounds of the arm
    model and of the rig's arm ``servos`` (:func:`~mmrobot.launch.sim.safety_limits_for`); the
    workspace box checked on the controller's forward kinematics, with the model's lever-arm
    bound (:func:`~mmrobot.envs.kinematics.tcp_lever_arms_m`), which spares most commands
    their second forward kinematics, and its analytic Jacobian for moving a target into the box.
    """
    from mmrobot.envs.kinematics import ArmKinematics, tcp_lever_arms_m

    return SafetyLayer(
        safety_limits_for(scene, section, servos),
        period_s=period_s,
        forward_kinematics=controller.tcp_position,
        fk_lever_arms_m=tcp_lever_arms_m(scene.model),
        fk_jacobian=ArmKinematics(scene.model).tcp_jacobian,
    )


class RobotSession:
    """A rig with a policy, ready to execute instructions one after another in real time.

    Args:
        launch: a validated launch file with ``[rig]`` and ``[policy]``.
        policy: use this policy object instead of loading ``[policy]`` (tests, scripted
            motions); anything with ``act(observation, instruction) -> ActionChunk``.
        success: an optional success detector, ``observation -> bool``; without one an
            instruction runs for its full time and ends ``"completed"``.
        clock: the loop's clock (default :class:`~mmrobot.core.MonotonicClock`).
        wait_s: how long to wait at start-up for every required stream to be valid.
        explain: explain every decision (``mmrobot run --explain``; torch checkpoints only).

    With ``loop.policy_worker = "process"`` the policy is loaded once, in its own process:
    this one reads only its observation spec, from the checkpoint's ``config.json`` or the
    export's ``policy.json``, and :attr:`policy` is None. The policy worker (thread or
    process) is started and warmed up here and serves every instruction of the session;
    :meth:`close` (or the end of ``with RobotSession(...)``) stops it.

    With ``loop.driver_worker = "process"`` the sensor drivers run in a
    :class:`~mmrobot.drivers.host.DriverHost` (their streams in shared memory; a process that
    died between instructions is started again), except those that must stay with the
    arm's actuator and joint readings (:func:`~mmrobot.drivers.host.hostable_drivers`);
    :meth:`drivers_report` says which run where.

    Raises:
        ConfigError: the rig lacks the actuator or the policy's streams, or limits are bad;
            a process worker with ``policy`` or ``explain`` (both need the policy here).
        DeviceNotConnectedError: a device is absent (names the port and the fix).
        DeviceTimeoutError: required streams did not become valid within ``wait_s``.
    """

    def __init__(
        self,
        launch: LaunchFile,
        policy: Any | None = None,
        success: Callable[[Observation], bool] | None = None,
        clock: Clock | None = None,
        wait_s: float = 10.0,
        explain: bool = False,
    ) -> None:
        if launch.rig is None or (launch.policy is None and policy is None):
            raise ConfigError(f"{launch.source}: a robot run needs [rig] and [policy]")
        loop_cfg = launch.loop.loop_config()
        self.loop_config = loop_cfg
        policy_in_child = loop_cfg.policy_worker == "process"
        if policy_in_child and (explain or policy is not None):
            why = "--explain needs" if explain else "a policy object is"
            raise ConfigError(
                f'{launch.source}: loop.policy_worker = "process" loads the launch file\'s '
                f'[policy] in its own process; {why} in this one: set loop.policy_worker = "thread"'
            )
        from mmrobot.drivers.rig import load_rig
        from mmrobot.envs.scene import Scene

        self.launch = launch
        self.clock: Clock = clock or MonotonicClock()
        self.success = success
        rig = load_rig(launch.path(launch.rig.file))
        self.rig = rig
        names = [a.name for a in rig.actuators]
        if launch.rig.actuator not in names:
            raise ConfigError(
                f"{launch.source}: rig.actuator = {launch.rig.actuator!r} is not in {rig.source} "
                f"(has {names})"
            )
        kin = launch.path(launch.rig.kinematics) if launch.rig.kinematics else None
        self.scene = Scene(kin)
        self.controller = CartesianController(self.scene, loop_cfg.rate_hz)
        self.policy: Any = policy
        if policy is None and not policy_in_child:
            self.policy = self._load_policy()
        self.driver_host: Any = None  # a DriverHost with loop.driver_worker = "process"
        self.drivers_here: dict[str, str] = {}  # drivers kept here in that mode, and why
        self.drivers = self._build_drivers()
        try:
            self._assemble(actuator_name=launch.rig.actuator, explain=explain)
        except BaseException:
            if self.driver_host is not None:  # its shared segments, before any child exists
                self.driver_host.close()
            raise
        self.stopped: str | None = None
        self._wait_s = wait_s
        self._opened: list[Any] = []
        try:
            if self.driver_host is not None:
                self.driver_host.start()  # raises a driver's own error from the child
                self._opened.append(self.driver_host)
            for d in self.drivers:
                if d.name in self._hosted_names:
                    continue
                d.open()
                self._opened.append(d)
            self.arm.actuator.open()
            self._opened.append(self.arm.actuator)
            if self.ft_feed is not None:
                self.ft_feed.start()
            self._wait_for_streams(wait_s)
            self._warm_up()
        except BaseException:
            self.close()
            raise

    def _assemble(self, actuator_name: str, explain: bool) -> None:
        """Actuator, synchronizer, checks, safety layer, loop and the F/T orientation feed,
        around the built drivers."""
        from mmrobot.sync import Synchronizer

        launch, rig, loop_cfg = self.launch, self.rig, self.loop_config
        actuator = next(a for a in rig.build_actuators(clock=self.clock) if a.name == actuator_name)
        self.arm = ArmCommandSink(actuator)
        n_arm = len(self.scene.arm_range)
        if self.arm.n_joints != n_arm:
            raise ConfigError(
                f"{rig.source}: actuator {actuator.name!r} has {self.arm.n_joints} joint servos "
                f"before the gripper; the arm model {self.scene.path} has {n_arm} joints"
            )
        self.sync = Synchronizer([b for d in self.drivers for b in d.buffers.values()])
        self._check_streams()
        self.joints_stream = self._joints_stream()
        if self.joints_stream not in launch.safety.required_streams:
            raise ConfigError(
                f"{launch.source}: safety.required_streams = "
                f"{list(launch.safety.required_streams)!r} lacks the rig's joint stream "
                f"{self.joints_stream!r}; a rig must require it"
            )
        self.safety = arm_safety_layer(
            self.scene,
            self.controller,
            launch.safety,
            actuator.config.servos[:-1],
            1.0 / loop_cfg.rate_hz,
        )
        self._timed = _TimedSync(self.sync, self.clock)
        self.explainer = None
        if explain:  # every decision explained (mmrobot run --explain); torch policies only
            from mmrobot.launch.explain import ExplainingPolicy

            self.explainer = ExplainingPolicy(self.policy, loop_cfg.period_ns)
        self.loop = ControlLoop(
            self._timed,  # type: ignore[arg-type]
            self.explainer or self.policy,
            self.arm,
            self.safety,
            measure=self._measure,
            to_command=self._to_command,
            grip_force=None,
            config=loop_cfg,
            clock=self.clock,
            policy_factory=self._policy_factory(),
            control_streams=(self.joints_stream,),  # _to_command's only input
        )
        self.ft_feed = self._ft_feed()

    # -- construction helpers
    def _build_drivers(self) -> list[Any]:
        """The rig's enabled drivers, in rig order. With ``loop.driver_worker = "process"``
        those that may move (:func:`~mmrobot.drivers.host.hostable_drivers`) are views of a
        :class:`~mmrobot.drivers.host.DriverHost` (started with the devices), reading shared
        memory; the others are built here, as in the default mode."""
        rig = self.rig
        self._hosted_names: frozenset[str] = frozenset()
        if self.launch.loop.driver_worker != "process":
            return rig.build_drivers(clock=self.clock)
        from mmrobot.drivers.host import DriverHost, hostable_drivers

        if not isinstance(self.clock, MonotonicClock):
            raise ConfigError(
                f'{self.launch.source}: loop.driver_worker = "process" stamps samples with the '
                f"machine's monotonic clock in the driver process; this session runs on "
                f'{self.clock!r}: use MonotonicClock or loop.driver_worker = "thread"'
            )
        hosted, self.drivers_here = hostable_drivers(rig)
        if not hosted:
            return rig.build_drivers(clock=self.clock)
        local = rig.build_drivers(clock=self.clock, names=list(self.drivers_here))
        self.driver_host = DriverHost(
            rig, hosted, cpu_affinity=self.launch.loop.driver_cpu_affinity
        )
        self._hosted_names = frozenset(hosted)
        by_name = {d.name: d for d in (*local, *self.driver_host.drivers)}
        return [by_name[e.name] for e in rig.drivers if e.enabled]

    def drivers_report(self) -> str:
        """Where the sensor drivers run, one line (the results' ``loop.drivers``)."""
        if self.driver_host is None:
            moved = self.launch.loop.driver_worker == "process"
            why = "none may move" if moved else 'loop.driver_worker = "thread"'
            return f"drivers: all in the loop's process ({why})"
        host = self.driver_host
        where = (f" (pid {host.pid})" if host.pid else "") + (
            f" on CPUs {list(host.cpu_affinity)}" if host.cpu_affinity else ""
        )
        here = "".join(f"; {n} here ({why})" for n, why in self.drivers_here.items())
        hosted = ", ".join(sorted(self._hosted_names))
        return f"drivers: {hosted} in their own process{where}, streams in shared memory{here}"

    def _ft_feed(self) -> FtOrientationFeed | None:
        """The orientation feed of the F/T drivers that compensate gravity (``payload``)."""
        fts = [d for d in self.drivers if getattr(d.config, "payload", None) is not None]
        if not fts:
            return None
        joints = next(d for d in self.drivers if self.joints_stream in d.buffers)
        try:
            return FtOrientationFeed(fts, joints, self.scene.model)
        except ConfigError as e:
            raise ConfigError(
                f"{self.rig.source}: {[d.name for d in fts]} compensate gravity (`payload`), "
                f"which needs the F/T sensor's frame in the arm model {self.scene.path}: {e}"
            ) from e

    def _load_policy(self) -> Any:
        from mmrobot.launch.policy_loader import load_launch_policy

        return load_launch_policy(self.launch)

    def _policy_factory(self) -> Any:
        """With ``loop.policy_worker = "process"``: loads the launch file's policy in the
        worker process, the only one that loads it."""
        if self.loop_config.policy_worker != "process":
            return None
        from mmrobot.launch.policy_loader import load_launch_policy

        return functools.partial(load_launch_policy, self.launch)

    def _check_streams(self) -> None:
        """The policy's declared streams must exist in the rig, with the same shapes, histories
        and dtypes (:func:`~mmrobot.launch.policy_check.stream_problems`). Without the policy
        here (a process worker loads it) they are read from its config file."""
        from mmrobot.launch.policy_check import read_policy_config, stream_problems
        from mmrobot.train.eval import policy_stream_specs

        if self.policy is None:
            wanted = read_policy_config(self.launch).streams
        else:
            wanted = policy_stream_specs(self.policy)
        problems = stream_problems(wanted or (), self.sync.specs, f"the rig {self.rig.source}")
        if problems:
            raise ConfigError(
                f"{self.rig.source} does not give the policy what it was trained on: "
                + "; ".join(problems)
                + "; set `stream` names, shapes and histories in the rig file"
            )

    def _warm_up(self) -> None:
        """One policy call before the first instruction: the first call of a network is slow
        (allocation, lazy initialization) and would otherwise miss the loop's deadlines."""
        self.loop.warm_up(self.sync.observe(self.clock.now_ns()))

    def _joints_stream(self) -> str:
        n = self.arm.n_joints + 1
        for s in self.sync.specs:
            if s.modality == "joints" and tuple(s.shape) == (n,):
                return s.name
        raise ConfigError(
            f"{self.rig.source}: no joints stream of shape ({n},) (arm joints + gripper); the "
            "arm's Dynamixel [[driver]] entry provides it"
        )

    def _wait_for_streams(self, timeout_s: float) -> None:
        required = set(self.launch.safety.required_streams) | {self.joints_stream}
        end = time.monotonic() + timeout_s
        while True:
            obs = self.sync.observe(self.clock.now_ns())
            missing = sorted(s for s in required if not obs.valid.get(s, False))
            if not missing:
                return
            if time.monotonic() > end:
                health = ", ".join(
                    f"{d.name}: {d.health.value} {getattr(d.stats, 'last_error', None) or ''}"
                    for d in self.drivers
                )
                raise DeviceTimeoutError(
                    f"streams {missing} of {self.rig.source} did not become valid within "
                    f"{timeout_s:g} s (drivers: {health}); check the devices with "
                    f"`mmrobot rig {self.rig.source} --run 5`"
                )
            time.sleep(0.02)

    # -- the arm model
    def _latest_joints(self, obs: Observation) -> np.ndarray:
        j = np.asarray(obs.values[self.joints_stream], np.float64)
        return j[-1] if j.ndim == 2 else j

    def _measure(self, obs: Observation) -> np.ndarray:
        j = self._latest_joints(obs)
        n = self.arm.n_joints
        return np.concatenate([j[:n], [self.arm.gripper_fraction(float(j[n]))]])

    def _to_command(self, action: np.ndarray, obs: Observation) -> np.ndarray:
        n = self.arm.n_joints
        q_meas = self._latest_joints(obs)[:n]
        last = self.safety.hold_command
        q_last = q_meas if last is None else last[:n]
        q = self.controller.command(action, q_meas, q_last)
        return np.concatenate([q, [float(action[6])]])

    # -- instructions
    def execute(
        self,
        instruction: str,
        task: str | None = None,
        max_seconds: float | None = None,
        on_step: Callable[[int, dict[str, Any]], None] | None = None,
        should_stop: Callable[[], str | None] | None = None,
    ) -> Outcome:
        """Run one instruction in real time until ``max_seconds`` (default ``run.max_seconds``),
        the success detector, Ctrl-C (or a reason from ``should_stop``, asked every tick) or
        the watchdog. A stop by a signal is marked ``interrupted`` and, like the watchdog,
        switches the torque off and ends the session.

        Raises:
            LifecycleError: an earlier instruction was stopped by a signal or the watchdog
                (the motors are off; start a new session).
        """
        if self.stopped:
            raise LifecycleError(
                f"the robot was stopped ({self.stopped}) and its torque is off; start a new "
                "session to continue"
            )
        max_seconds = max_seconds or self.launch.run.max_seconds
        self._restart_dead_driver_host()
        obs = self.sync.observe(self.clock.now_ns())
        self.controller.reset(self._latest_joints(obs)[: self.arm.n_joints])
        self.safety.events.clear()
        self.safety.n_holds = 0
        succeeded = False
        tick_ms: list[float] = []

        def until() -> bool:
            nonlocal succeeded
            tick_ms.append((self.clock.now_ns() - self._timed.last_observe_ns) / 1e6)
            stats = self.loop.stats
            if on_step is not None:
                on_step(stats.ticks, {"safety": self.safety.counts()})
            stop = should_stop() if should_stop is not None else None
            if stop:  # a stop asked outside the loop's own signal handlers
                self.loop.request_stop(stop)
            if self.success is not None and stats.ticks % self.loop_config.ticks_per_policy == 0:
                succeeded = bool(self.success(self.sync.observe(self.clock.now_ns())))
            return succeeded

        t0 = time.perf_counter()
        if self.explainer is not None:
            self.explainer.begin(self.clock.now_ns())
        # the worker stays for the next instruction, warm; close() stops it
        stats = self.loop.run(instruction, duration_s=max_seconds, until=until, keep_worker=True)
        wall = time.perf_counter() - t0
        reason = stats.stop_reason
        if reason.startswith(("signal", "watchdog")):
            self.stopped = reason
        elif succeeded:
            reason = "success"
        elif reason == "duration reached":
            reason = "completed"
        return Outcome(
            instruction=instruction,
            task=task or "-",
            success=succeeded,
            steps=stats.ticks,
            sim_seconds=wall,  # robot time is wall time here
            wall_seconds=wall,
            reason=reason,
            policy_latency_ms=[x / 1e6 for x in stats.policy_latency_ns],
            tick_ms=tick_ms,
            safety=self.safety.counts(),
            interrupted=reason.startswith("signal"),
            attribution=self.explainer.trace.to_dict() if self.explainer is not None else None,
            loop={
                **stats.summary(),
                "drivers": self.drivers_report(),
                "driver_restarts": 0 if self.driver_host is None else self.driver_host.restarts,
            },
        )

    def _restart_dead_driver_host(self) -> None:
        """A driver process that died between instructions (killed, out of memory) is started
        again, on the same shared buffers, before the next instruction reads them."""
        host = self.driver_host
        if host is None or host.alive:
            return
        _log.warning(
            "the driver process (pid %s) exited (code %s) between instructions; starting a new one",
            host.pid,
            host.exitcode,
        )
        host.restart_if_dead()
        self._wait_for_streams(self._wait_s)

    def close(self) -> None:
        """Close the actuator (torque off where the rig says so) and every driver, then stop
        the policy worker (a process worker's process exits)."""
        try:
            if self.ft_feed is not None:
                self.ft_feed.stop()
            for dev in reversed(self._opened):
                with contextlib.suppress(Exception):
                    dev.close()
            self._opened.clear()
            with contextlib.suppress(Exception):
                self.scene.close()
        finally:
            self.loop.close()

    def __enter__(self) -> RobotSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
