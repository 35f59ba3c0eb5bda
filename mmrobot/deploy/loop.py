"""The fixed-rate control loop: observe, act, ensemble, make safe, send.

Each tick at ``rate_hz`` on the loop's clock:

1. ``Synchronizer.observe(now)`` (with ``control_streams``, on a tick that calls no
   policy: ``observe_latest``, the newest sample of the streams the command needs).
2. When a new chunk is due (every ``1 / policy_rate_hz``): ``policy.act(obs, instruction)``,
   inline (``policy_worker = "inline"``: simulation time, where a tick may take as long as
   it likes), in a :class:`~mmrobot.deploy.workers.PolicyWorker` thread (``"thread"``: real
   time) or in a :class:`~mmrobot.deploy.workers.PolicyProcess` (``"process"``: real time,
   and no share of the loop's GIL). A worker is handed the newest observation and the tick
   goes on at once; the chunk is used when it arrives, at its own timestamps, so a late
   chunk is still right for the times it covers.
   A chunk with a non-finite action is rejected and counted.
3. The command for ``now`` from every chunk that covers it, combined by temporal ensembling
   (Zhao et al. 2023, "Learning Fine-Grained Bimanual Manipulation with Low-Cost
   Hardware", ACT: weights ``exp(-m * k)`` with k = 0 for the oldest chunk), linearly
   interpolated between the chunk's action steps when commands run faster than actions.
4. ``to_command(action, obs)`` maps the action to joint targets (identity for joint-target
   action spaces; inverse kinematics for end-effector actions).
5. :class:`~mmrobot.deploy.safety.SafetyLayer` clamps it or holds; the actuator gets the result.

When no chunk covers the tick's time the layer holds position, with the reason: no chunk
yet, or a stale policy (the newest chunk's horizon has passed).

A watchdog thread stops the robot when no tick completes within ``watchdog_periods``
periods. In real time (:meth:`ControlLoop.run`) the loop thread asks Linux for what it
offers (``SCHED_FIFO`` when permitted, CPU affinity) and keeps the garbage collector out of
the ticks (``gc.freeze()`` after warm-up, young-generation collections only in a tick's
slack). SIGINT and SIGTERM stop it in a controlled way: hold, then torque off where the
actuator can. Timing statistics (period jitter, deadline misses, policy latency, stream
ages, each tick's CPU time and the wall time of its parts) are kept per run.

A policy worker (thread or process) is started once and serves every run of its loop while
the loop's owner holds it (``with loop:``, or ``run(keep_worker=True)`` and
:meth:`ControlLoop.close`): a process loads the policy once, and its first call of each
instruction is as fast as any other. Without an owner a run stops the worker it used. A
policy process that died between instructions is replaced by a new one when the next
instruction starts (``LoopStats.policy_restarts``); one that dies during a run fails the run.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np

from mmrobot.core.clock import Clock, MonotonicClock
from mmrobot.core.errors import ConfigError
from mmrobot.core.types import ActionChunk, Observation
from mmrobot.deploy.chunks import PolicyLike, TemporalEnsembler
from mmrobot.deploy.loop_config import (
    POLICY_WORKERS,
    CommandSink,
    LoopConfig,
    LoopStats,
    SendTiming,
    TorqueControl,
)
from mmrobot.deploy.safety import SafetyLayer
from mmrobot.deploy.workers import PolicyProcess, PolicyWorker, runtime_report
from mmrobot.sync.synchronizer import Synchronizer

_log = logging.getLogger(__name__)

__all__ = [
    "POLICY_WORKERS",
    "CommandSink",
    "ControlLoop",
    "LoopConfig",
    "LoopStats",
    "PolicyProcess",
    "PolicyWorker",
    "TemporalEnsembler",
]


class ControlLoop:
    """Runs a policy on a robot at a fixed rate, through the safety layer.

    Args:
        sync: the synchronizer over the robot's (or simulation's) streams.
        policy: anything with ``act(observation, instruction) -> ActionChunk``.
        actuator: anything with ``send(command)``; with ``set_torque`` it is switched off
            at the end of a controlled stop.
        safety: the safety layer (always applied).
        measure: observation -> measured joint state (joints + gripper), used to start
            holding from where the robot is.
        to_command: (action, observation) -> joint-space command; identity by default.
        grip_force: observation -> measured grip force in N (for the gripper force limit).
        config: rates and timeouts.
        clock: the loop's clock (``MonotonicClock`` on hardware).
        policy_factory: with ``config.policy_worker = "process"``, builds the policy in the
            worker process; must pickle (see :class:`~mmrobot.deploy.workers.PolicyProcess`).
        control_streams: the streams whose values ``to_command`` and ``grip_force`` read.
            Given, a tick that calls no policy observes only these (their newest sample,
            :meth:`Synchronizer.observe_latest`) and every stream's age and validity; a
            policy tick observes everything. None: every tick observes everything.

    A worker (thread or process) is started by :meth:`warm_up`, the first worker tick or
    :meth:`run`, and stopped by :meth:`close`. As a context manager (``with ControlLoop(...)
    as loop:``) the loop keeps it across runs and closes it when the block ends, on an error
    too; see :meth:`run` for who stops it otherwise.

    Raises:
        ConfigError: a process worker without a ``policy_factory``.
    """

    def __init__(
        self,
        sync: Synchronizer,
        policy: PolicyLike,
        actuator: CommandSink,
        safety: SafetyLayer,
        measure: Callable[[Observation], np.ndarray],
        to_command: Callable[[np.ndarray, Observation], np.ndarray] | None = None,
        grip_force: Callable[[Observation], float | None] | None = None,
        config: LoopConfig | None = None,
        clock: Clock | None = None,
        policy_factory: Callable[[], PolicyLike] | None = None,
        control_streams: Sequence[str] | None = None,
    ) -> None:
        self.sync = sync
        if control_streams is not None:
            have = [s.name for s in sync.specs]
            unknown = sorted(set(control_streams) - set(have))
            if unknown:
                raise ConfigError(
                    f"loop: control_streams {unknown} are not streams; streams: {have}"
                )
        self.control_streams = None if control_streams is None else frozenset(control_streams)
        self.policy = policy
        self.actuator = actuator
        self.safety = safety
        self.measure = measure
        self.to_command = to_command or (lambda action, obs: action)
        self.grip_force = grip_force or (lambda obs: None)
        self.config = config or LoopConfig()
        if self.config.policy_worker == "process" and policy_factory is None:
            raise ConfigError(
                'loop: policy_worker = "process" needs a policy_factory that builds the policy '
                "in the worker process"
            )
        self.policy_factory = policy_factory
        self.clock = clock or MonotonicClock()
        self.ensembler = TemporalEnsembler(self.config.ensemble_decay)
        self.stats = LoopStats()
        self._send_timing = isinstance(actuator, SendTiming)  # once: isinstance is slow
        self._stop = threading.Event()
        self._tripped = threading.Event()  # the watchdog took over: send nothing more
        self._send_lock = threading.Lock()
        self._stop_reason = ""
        self._tick_index = 0
        self._last_tick_done_ns = 0
        self._started = False
        self._generation = 0  # chunks requested before the latest start() are dropped
        self._worker: PolicyWorker | PolicyProcess | None = None
        self._process_report: str | None = None  # the last policy process's runtime_report
        self._in_context = False  # inside ``with loop:``, whose end closes the worker

    # ----------------------------------------------------------------- one tick
    def start(self, instruction: str, t_ns: int | None = None) -> None:
        """Begin an instruction: reset the policy, the ensembler and the hold target."""
        now = self.clock.now_ns() if t_ns is None else t_ns
        self.instruction = instruction
        obs = self.sync.observe(now)
        self.safety.reset(self.measure(obs))
        self.ensembler.reset()
        self._generation += 1
        if isinstance(self._worker, PolicyProcess) and not self._worker.alive:
            # it died between instructions (killed, out of memory): nothing of this
            # instruction came from it yet, so start a fresh one rather than fail the run
            _log.warning(
                "the policy process (pid %s) exited between instructions; starting a new one",
                self._worker.pid,
            )
            self.close()
            self.stats.policy_restarts += 1
        if self._worker is not None:
            self._worker.wait_idle(timeout_s=self.config.watchdog_periods / self.config.rate_hz)
            self._worker.poll()
        self._reset_policy()
        self._tick_index = 0
        self._tripped.clear()
        self._started = True
        self._last_tick_done_ns = now

    def tick(self, t_ns: int) -> tuple[np.ndarray, ActionChunk | None]:
        """One control tick at ``t_ns``: returns the command sent and the new chunk, if any."""
        if not self._started:
            raise RuntimeError("ControlLoop.tick() before start(instruction)")
        clock = time.perf_counter_ns  # the parts' wall times: LoopStats.tick_parts_ns
        t0 = clock()
        policy_tick = self._tick_index % self.config.ticks_per_policy == 0
        if policy_tick or self.control_streams is None:
            obs = self.sync.observe(t_ns)
        else:  # between policy calls only the command's own streams are read
            obs = self.sync.observe_latest(t_ns, self.control_streams)
        for name, age in obs.ages_ns.items():
            self.stats.ages_ns.setdefault(name, []).append(age)
        t1 = clock()
        chunk = None
        if policy_tick:
            if self.config.policy_worker != "inline":
                worker = self._ensure_worker()
                if worker.submit(self._generation, obs, self.instruction):
                    self.stats.replaced_requests += 1
            else:
                t = clock()
                result = self.policy.act(obs, self.instruction)
                chunk = self._accept(t_ns, result, clock() - t)
        t2 = clock()
        if self._worker is not None:
            for generation, result, latency_ns in self._worker.poll():
                if generation == self._generation:
                    chunk = self._accept(t_ns, result, latency_ns) or chunk
        t3 = clock()
        action = self.ensembler.action_at(t_ns)
        newest = self.ensembler.newest
        if newest is not None:
            self.stats.policy_age_ns.append(t_ns - newest.t_ns)
        t4 = t5 = clock()
        holds_before = self.safety.n_holds
        if action is None and newest is None:
            command = self.safety.hold(t_ns, "no action chunk yet", "no_chunk")
        elif action is None:
            age_ms = (t_ns - newest.t_ns) / 1e6
            span_ms = (newest.horizon - 1) * newest.period_ns / 1e6
            command = self.safety.hold(
                t_ns,
                f"stale policy: the newest chunk is {age_ms:.1f} ms old and covers "
                f"{span_ms:.1f} ms",
                "stale_policy",
            )
        else:
            raw = np.asarray(self.to_command(action, obs), np.float64)
            t5 = clock()
            command = self.safety.filter(t_ns, raw, dict(obs.valid), self.grip_force(obs))
        if self.safety.n_holds > holds_before:
            self.stats.holds += self.safety.n_holds - holds_before
            cause = self.safety.events[-1].where or "other"
            self.stats.hold_reasons[cause] = self.stats.hold_reasons.get(cause, 0) + 1
        t6 = clock()
        with self._send_lock:
            sent = not self._tripped.is_set()
            if sent:
                self.actuator.send(command)
        t7 = clock()
        self.stats.tick_parts_ns.append(
            (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5, t7 - t6)
        )
        if sent and self._send_timing:
            bus_ns = self.actuator.last_send_ns  # type: ignore[attr-defined]
            if bus_ns is not None:
                self.stats.send_bus_ns.append(bus_ns)
        self._tick_index += 1
        self.stats.ticks += 1
        return command, chunk

    def _accept(
        self, t_ns: int, result: ActionChunk | BaseException, latency_ns: int
    ) -> ActionChunk | None:
        """Count a finished policy call and hand a good chunk to the ensembler."""
        if isinstance(result, BaseException):
            raise result  # the policy failed in its worker: fail here, as inline would
        self.stats.policy_latency_ns.append(latency_ns)
        self.stats.policy_calls += 1
        if np.all(np.isfinite(result.actions)):
            self.ensembler.add(result)
            return result
        self.stats.rejected_chunks += 1
        self.safety.record(t_ns, "rejected_chunk", "non-finite action in chunk")
        return None

    def _ensure_worker(self) -> PolicyWorker | PolicyProcess:
        if self._worker is None:
            cpus = self.config.policy_cpu_affinity
            if self.config.policy_worker == "process":
                assert self.policy_factory is not None  # checked in __init__
                self._worker = PolicyProcess(self.policy_factory, cpus=cpus)
                self._process_report = self._worker.runtime_report
            else:
                self._worker = PolicyWorker(self.policy, cpus=cpus)
        return self._worker

    def warm_up(self, observation: Observation, timeout_s: float = 120.0) -> None:
        """One policy call before the first instruction, where the policy will run (the
        first call of a network is slow: allocation, lazy initialization). A worker is
        started here, at the caller's priority, and its answer is dropped."""
        if self.config.policy_worker == "inline":
            self.policy.act(observation, "")
        else:
            worker = self._ensure_worker()
            worker.submit(-1, observation, "")
            if not worker.wait_idle(timeout_s):
                raise RuntimeError(f"the policy's first call took longer than {timeout_s:g} s")
            for _, result, _ in worker.poll():
                if isinstance(result, BaseException):
                    raise result
        self._reset_policy()

    def policy_report(self) -> str | None:
        """The policy's line on what runs it (an ONNX policy: which execution provider, and
        why not those preferred to it), from the process it runs in; None when it has none,
        or when a process worker has not been started yet (:meth:`warm_up` starts it)."""
        if self.config.policy_worker == "process":
            return self._process_report
        return runtime_report(self.policy)

    def _reset_policy(self) -> None:
        """``policy.reset()`` where the policy runs (call when no request is running)."""
        if self._worker is not None:
            self._worker.reset()
            return
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            reset()

    def close(self) -> None:
        """Stop the policy worker (thread or process), if one was started; a later call that
        needs one starts a new one."""
        if self._worker is not None:
            worker, self._worker = self._worker, None
            worker.close()

    def __enter__(self) -> ControlLoop:
        self._in_context = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._in_context = False
        self.close()

    # ----------------------------------------------------------------- real time
    def run(
        self,
        instruction: str,
        duration_s: float | None = None,
        until: Callable[[], bool] | None = None,
        keep_worker: bool | None = None,
    ) -> LoopStats:
        """Run in real time on the loop's clock until ``duration_s``, ``until()``, a stop
        request, a signal or the watchdog. Returns the run's statistics.

        Args:
            instruction: what the policy is asked to do.
            duration_s: the longest the run may take; None: no limit.
            until: asked after every tick; True ends the run (``"done"``).
            keep_worker: whether the policy worker (thread or process) outlives the run, for
                the next one to use as it is: warm, its policy loaded once (:meth:`start`
                drops its pending requests and resets the policy). True: the caller stops it
                with :meth:`close` (a session, when it closes). None (the default): kept
                inside ``with loop:``, whose end stops it, else stopped with the run, so that
                a run on its own leaves no thread or process behind. A run that ends in an
                exception (the policy raised, its process died) always stops it.
        """
        keep = self._in_context if keep_worker is None else keep_worker
        try:
            stats = self._run(instruction, duration_s, until)
        except BaseException:
            self.close()  # a failed worker (its process died) is never kept
            raise
        if not keep:
            self.close()
        return stats

    def _run(
        self, instruction: str, duration_s: float | None, until: Callable[[], bool] | None
    ) -> LoopStats:
        """:meth:`run`, except for stopping the worker."""
        self.stats = LoopStats()
        self._stop.clear()
        self._tripped.clear()
        self._stop_reason = ""
        period = self.config.period_ns
        self.start(instruction)
        if self.config.policy_worker != "inline":
            # before the signal handlers (Ctrl-C while a process loads its policy ends the
            # call) and _claim_cpu (the worker must not inherit FIFO)
            self._ensure_worker()
        restore = self._install_signal_handlers()
        switch_interval = sys.getswitchinterval()
        if self.config.policy_worker != "inline":
            sys.setswitchinterval(self.config.switch_interval_s)
        self.stats.scheduling, release_cpu = self._claim_cpu()
        gc_was_enabled = gc.isenabled()
        if self.config.gc_freeze:
            gc.collect()
            gc.freeze()  # everything alive now is never scanned again
            gc.disable()
        # The first tick is due after the setup above (a full collection of a big process
        # takes a while), so that it is not late before it starts.
        t_start = self.clock.now_ns()
        self._last_tick_done_ns = t_start
        end = None if duration_s is None else t_start + round(duration_s * 1e9)
        watchdog = threading.Thread(target=self._watchdog, name="mmrobot-watchdog", daemon=True)
        watchdog.start()
        fault = True  # until the loop ends normally
        try:
            k = 0
            while not self._stop.is_set():
                scheduled = t_start + k * period
                if end is not None and scheduled >= end:
                    self._stop_reason = self._stop_reason or "duration reached"
                    break
                self._wait_until(scheduled)
                now = self.clock.now_ns()
                self.stats.jitter_ns.append(now - scheduled)
                cpu_ns = time.thread_time_ns()
                self.tick(now)
                cpu_ns = time.thread_time_ns() - cpu_ns
                done = self.clock.now_ns()
                self.stats.tick_compute_ns.append(done - now)
                self.stats.tick_cpu_ns.append(cpu_ns)
                self._last_tick_done_ns = done
                if done > scheduled + period:
                    self.stats.deadline_misses += 1
                    # skip the ticks we cannot make; never send a burst to catch up
                    k_next = (done - t_start) // period + 1
                    self.stats.skipped_ticks += k_next - (k + 1)
                    k = k_next - 1
                elif self.config.gc_freeze and scheduled + period - done > period // 2:
                    gc.collect(0)  # the young generation only, in this tick's slack
                k += 1
                if until is not None and until():
                    self._stop_reason = "done"
                    break
            fault = self._stop_reason.startswith(("signal", "watchdog"))
        finally:
            self._stop.set()
            watchdog.join(timeout=1.0)
            restore()
            release_cpu()
            sys.setswitchinterval(switch_interval)
            if self.config.gc_freeze:
                gc.unfreeze()
                if gc_was_enabled:
                    gc.enable()
            # A normal end holds position (the next instruction starts from there); a
            # signal, the watchdog or an exception also switches the motors off.
            self._controlled_stop(torque_off=fault)
        self.stats.stop_reason = self._stop_reason or "stopped"
        return self.stats

    def _claim_cpu(self) -> tuple[str, Callable[[], None]]:
        """Ask Linux for ``SCHED_FIFO`` and CPU affinity for this thread, as configured.
        Returns what was granted, in words (refusals are reported, never raised), and a
        function that gives it back."""
        parts, undo = [], []
        prio = self.config.realtime_priority
        if prio:
            try:
                policy, param = os.sched_getscheduler(0), os.sched_getparam(0)
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
                undo.append(lambda: os.sched_setscheduler(0, policy, param))
                parts.append(f"SCHED_FIFO {prio}")
            except (AttributeError, PermissionError, OSError) as e:
                parts.append(f"SCHED_FIFO {prio} refused ({e.__class__.__name__}); normal priority")
        if self.config.cpu_affinity:
            try:
                cpus = os.sched_getaffinity(0)
                os.sched_setaffinity(0, set(self.config.cpu_affinity))
                undo.append(lambda: os.sched_setaffinity(0, cpus))
                parts.append(f"CPUs {sorted(self.config.cpu_affinity)}")
            except (AttributeError, OSError) as e:
                parts.append(f"affinity {list(self.config.cpu_affinity)} refused ({e})")

        def release() -> None:
            for f in undo:
                f()

        return "; ".join(parts) or "normal priority, any CPU", release

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask a running loop to stop (thread-safe)."""
        self._stop_reason = self._stop_reason or reason
        self._stop.set()

    def _wait_until(self, t_ns: int) -> None:
        """Sleep until shortly before ``t_ns``, then spin: sleep alone overshoots by ~0.1 ms+."""
        spin_ns = round(self.config.spin_s * 1e9)
        while True:
            remaining = t_ns - self.clock.now_ns()
            if remaining <= 0:
                return
            if remaining > spin_ns:
                time.sleep((remaining - spin_ns) / 1e9)

    def _watchdog(self) -> None:
        limit = self.config.watchdog_periods * self.config.period_ns
        while not self._stop.wait(self.config.period_ns / 1e9):
            if self.clock.now_ns() - self._last_tick_done_ns > limit:
                # The main thread is stuck (a hung policy or driver): make the robot safe
                # from here, and let nothing the stuck tick computes reach the actuator.
                self.stats.watchdog_trips += 1
                self.request_stop(
                    f"watchdog: no tick completed in {self.config.watchdog_periods} periods"
                )
                self._controlled_stop(torque_off=True)
                return

    def _controlled_stop(self, torque_off: bool) -> None:
        """Send the last safe command and stop sending; after ``stop_hold_s``, switch the
        motors off when ``torque_off`` and the actuator can.

        Runs once per run, from the watchdog thread or at the end of :meth:`run`."""
        with self._send_lock:
            if self._tripped.is_set():
                return
            self._tripped.set()
            hold = self.safety.hold_command
            if hold is not None:
                self.actuator.send(hold)
        if torque_off and isinstance(self.actuator, TorqueControl):
            time.sleep(self.config.stop_hold_s)
            self.actuator.set_torque(False)

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: object) -> None:
            self.request_stop(f"signal {signal.Signals(signum).name}")

        for s in previous:
            signal.signal(s, handler)

        def restore() -> None:
            for s, h in previous.items():
                signal.signal(s, h)

        return restore
