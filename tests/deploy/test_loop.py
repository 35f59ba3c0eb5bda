import os
import sys
import threading
import time

import numpy as np
import pytest

from mmrobot.core import ActionChunk, ConfigError, ManualClock, StreamSpec
from mmrobot.deploy.loop import ControlLoop, LoopConfig, TemporalEnsembler
from mmrobot.deploy.safety import SafetyLayer, SafetyLimits
from mmrobot.sync import StreamBuffer, Synchronizer

MS = 1_000_000


def chunk(t_ns, values, period_ns=10 * MS):
    actions = np.asarray(values, np.float32).reshape(len(values), -1)
    return ActionChunk(t_ns=t_ns, actions=actions, period_ns=period_ns)


def test_ensembler_weights_older_chunks_and_interpolates():
    e = TemporalEnsembler(decay=0.0)
    e.add(chunk(0, [0.0, 1.0, 2.0, 3.0]))
    e.add(chunk(10 * MS, [10.0, 11.0, 12.0, 13.0]))
    assert e.action_at(20 * MS)[0] == pytest.approx((2.0 + 11.0) / 2)
    assert e.action_at(5 * MS)[0] == pytest.approx(0.5)  # halfway between two steps
    assert e.action_at(35 * MS)[0] == pytest.approx(12.5)  # only the newer one covers it
    assert e.action_at(-1) is None and e.action_at(41 * MS) is None
    w = np.exp(-1.0)  # decay 1: older chunk weight 1, newer exp(-1)
    e.decay = 1.0
    assert e.action_at(20 * MS)[0] == pytest.approx((2.0 + 11.0 * w) / (1 + w))
    e.decay = None
    assert e.action_at(20 * MS)[0] == pytest.approx(11.0)


def test_loop_config_rejects_rates_that_do_not_divide():
    with pytest.raises(ConfigError, match="whole multiple"):
        LoopConfig(rate_hz=50.0, policy_rate_hz=20.0)


class RampPolicy:
    """Proposes joint targets moving by +0.01 rad per step from the measured position."""

    def __init__(self, horizon=4, period_ns=10 * MS, poison_call=None, hang_call=None, hang_s=0.0):
        self.horizon, self.period_ns = horizon, period_ns
        self.calls = 0
        self.poison_call, self.hang_call, self.hang_s = poison_call, hang_call, hang_s

    def act(self, obs, instruction):
        self.calls += 1
        if self.calls == self.hang_call:
            time.sleep(self.hang_s)
        q = obs.values["joints"][:2].astype(np.float64)
        steps = np.arange(1, self.horizon + 1)[:, None] * 0.01
        actions = np.concatenate([q + steps, np.full((self.horizon, 1), 0.5)], axis=1)
        if self.calls == self.poison_call:
            actions[1, 0] = np.nan
        return ActionChunk(
            t_ns=obs.t_ns, actions=actions.astype(np.float32), period_ns=self.period_ns
        )


class RecordingArm:
    """An actuator that keeps every command (and moves its joint stream to it)."""

    def __init__(self, buf, clock):
        self.buf, self.clock = buf, clock
        self.sent, self.torque = [], True

    def send(self, command):
        self.sent.append(np.array(command))

    def set_torque(self, on):
        self.torque = on


def rig(clock, max_age_ns=50 * MS):
    spec = StreamSpec(
        name="joints",
        modality="joints",
        shape=(2,),
        dtype="float32",
        rate_hz=100.0,
        policy="causal",
        max_age_ns=max_age_ns,
    )
    buf = StreamBuffer(spec, 64)
    buf.push(clock.now_ns(), np.zeros(2, np.float32))
    return buf, Synchronizer([buf])


def safety(period_s=0.01, **kw):
    lim = dict(
        joint_low_rad=(-3.0, -3.0),
        joint_high_rad=(3.0, 3.0),
        max_velocity_rad_s=(10.0, 10.0),
        max_acceleration_rad_s2=(1e4, 1e4),
    )
    lim.update(kw)
    return SafetyLayer(SafetyLimits(**lim), period_s=period_s)


def measure(obs):
    return np.concatenate([obs.values["joints"], [0.5]])


def make_loop(sync, policy, arm, safety_layer=None, clock=None, **config):
    """A ControlLoop of ``policy`` on the test rig; ``config`` goes to LoopConfig."""
    kw = {} if clock is None else {"clock": clock}
    layer = safety() if safety_layer is None else safety_layer
    return ControlLoop(sync, policy, arm, layer, measure, config=LoopConfig(**config), **kw)


def test_ticks_send_safe_commands_and_reject_non_finite_chunks():
    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock)
    arm = RecordingArm(buf, clock)
    policy = RampPolicy(poison_call=3)
    loop = make_loop(
        sync, policy, arm, clock=clock, rate_hz=100, policy_rate_hz=50, ensemble_decay=None
    )
    loop.start("move")
    for _ in range(8):
        loop.tick(clock.now_ns())
        clock.advance(10 * MS)
    assert policy.calls == 4  # every other tick at 100 Hz / 50 Hz
    assert loop.stats.rejected_chunks == 1 and loop.safety.counts()["rejected_chunk"] == 1
    first = arm.sent[0]
    np.testing.assert_allclose(first, [0.01, 0.01, 0.5], atol=1e-6)
    # ticks 4-5 fall back on chunk 2 (chunk 3 was rejected): steps 2 and 3 of it
    np.testing.assert_allclose(arm.sent[4][:2], [0.03, 0.03], atol=1e-6)
    np.testing.assert_allclose(arm.sent[5][:2], [0.04, 0.04], atol=1e-6)


def test_stale_required_sensor_holds_position():
    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock, max_age_ns=15 * MS)
    arm = RecordingArm(buf, clock)
    loop = make_loop(
        sync,
        RampPolicy(),
        arm,
        safety(required_streams=("joints",)),
        clock=clock,
        rate_hz=100,
        policy_rate_hz=100,
    )
    loop.start("move")
    loop.tick(clock.now_ns())
    clock.advance(20 * MS)  # no new joint sample: the stream goes stale
    command, _ = loop.tick(clock.now_ns())
    np.testing.assert_allclose(command, arm.sent[0])
    assert loop.stats.holds == 1 and "joints" in loop.safety.events[-1].detail


def test_run_holds_at_the_end_and_keeps_torque_on():
    clock_buf = ManualClock(0)
    buf, sync = rig(clock_buf, max_age_ns=10**12)
    arm = RecordingArm(buf, None)
    loop = make_loop(sync, RampPolicy(), arm, rate_hz=100, policy_rate_hz=100)
    stats = loop.run("move", duration_s=0.2)
    assert stats.stop_reason == "duration reached"
    assert 1 <= stats.ticks <= 20 and stats.policy_calls == stats.ticks
    assert arm.torque is True
    np.testing.assert_allclose(arm.sent[-1], arm.sent[-2])  # the final hold repeats the last
    assert len(stats.jitter_ns) == stats.ticks


def test_watchdog_stops_a_hung_loop_and_nothing_late_is_sent():
    buf, sync = rig(ManualClock(0), max_age_ns=10**12)
    arm = RecordingArm(buf, None)
    policy = RampPolicy(hang_call=3, hang_s=0.6)
    loop = make_loop(
        sync, policy, arm, rate_hz=50, policy_rate_hz=50, watchdog_periods=5, stop_hold_s=0.0
    )
    stats = loop.run("move", duration_s=5.0)
    assert stats.stop_reason.startswith("watchdog") and stats.watchdog_trips == 1
    assert arm.torque is False
    assert len(arm.sent) == 3  # two ticks, then the watchdog's hold; the hung tick sent nothing
    np.testing.assert_allclose(arm.sent[2], arm.sent[1])


def test_sigterm_stops_in_a_controlled_way():
    buf, sync = rig(ManualClock(0), max_age_ns=10**12)
    arm = RecordingArm(buf, None)
    loop = make_loop(sync, RampPolicy(), arm, rate_hz=100, policy_rate_hz=100, stop_hold_s=0.0)
    threading.Timer(0.15, os.kill, (os.getpid(), 15)).start()
    stats = loop.run("move", duration_s=5.0)
    assert stats.stop_reason == "signal SIGTERM"
    assert arm.torque is False


class GatedPolicy(RampPolicy):
    """A RampPolicy whose calls wait for the test to open a gate: slower than any tick."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.gate = threading.Event()

    def act(self, obs, instruction):
        if not self.gate.wait(timeout=10.0):
            raise TimeoutError("the test never opened the gate")
        return super().act(obs, instruction)


def test_a_slow_policy_never_delays_a_tick_and_its_late_chunk_is_used_at_its_own_times():
    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock, max_age_ns=10**12)
    arm = RecordingArm(buf, clock)
    policy = GatedPolicy(horizon=8)
    loop = make_loop(
        sync, policy, arm, clock=clock, rate_hz=100, policy_rate_hz=50,
        ensemble_decay=None, policy_worker="thread",
    )  # fmt: skip
    loop.start("move")
    t0 = clock.now_ns()
    for _ in range(4):  # the policy is stuck: every tick still sends, a hold
        loop.tick(clock.now_ns())
        clock.advance(10 * MS)
    assert len(arm.sent) == 4 and loop.stats.policy_calls == 0
    assert loop.stats.hold_reasons == {"no_chunk": 4}
    # ticks 0 and 2 asked; the request of tick 2 replaced tick 0's only if 0 had not started
    policy.gate.set()
    assert loop._worker.wait_idle(5.0)
    command, chunk = loop.tick(clock.now_ns())  # t0 + 40 ms
    assert chunk is not None and chunk.t_ns in (t0, t0 + 20 * MS)
    # the chunk's step k is for chunk.t_ns + k * 10 ms: at t0 + 40 ms that is step 4 (or 2)
    k = (clock.now_ns() - chunk.t_ns) // (10 * MS)
    np.testing.assert_allclose(arm.sent[-1][:2], chunk.actions[k, :2], atol=1e-6)
    assert loop.stats.policy_age_ns[-1] == clock.now_ns() - chunk.t_ns
    loop.close()


def test_a_chunk_past_its_horizon_is_a_stale_policy_hold():
    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock, max_age_ns=10**12)
    arm = RecordingArm(buf, clock)
    policy = GatedPolicy(horizon=2)
    policy.gate.set()
    loop = make_loop(sync, policy, arm, clock=clock, rate_hz=100, policy_rate_hz=20,
                     policy_worker="thread")  # fmt: skip
    loop.start("move")
    loop.tick(clock.now_ns())
    assert loop._worker.wait_idle(5.0)
    policy.gate.clear()  # the next call hangs
    for _ in range(4):
        clock.advance(10 * MS)
        loop.tick(clock.now_ns())
    assert loop.stats.hold_reasons.get("stale_policy", 0) >= 2
    assert "stale policy" in loop.safety.events[-1].detail
    policy.gate.set()
    loop.close()


def test_a_policy_that_raises_in_its_worker_fails_the_tick():
    class Broken(RampPolicy):
        def act(self, obs, instruction):
            raise ValueError("bad weights")

    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock, max_age_ns=10**12)
    loop = make_loop(sync, Broken(), RecordingArm(buf, clock), clock=clock,
                     rate_hz=100, policy_rate_hz=100, policy_worker="thread")  # fmt: skip
    loop.start("move")
    with pytest.raises(ValueError, match="bad weights"):  # in this tick, if the worker was quick
        loop.tick(clock.now_ns())
        assert loop._worker.wait_idle(5.0)
        clock.advance(10 * MS)
        loop.tick(clock.now_ns())
    loop.close()


def test_run_gives_back_scheduling_and_the_garbage_collector():
    import gc

    buf, sync = rig(ManualClock(0), max_age_ns=10**12)
    before = (
        os.sched_getscheduler(0),
        os.sched_getaffinity(0),
        gc.isenabled(),
        sys.getswitchinterval(),
    )
    loop = make_loop(
        sync, RampPolicy(), RecordingArm(buf, None), rate_hz=100, policy_rate_hz=20,
        policy_worker="thread", realtime_priority=10, cpu_affinity=(0,),
    )  # fmt: skip
    ballast = [[i] for i in range(2_500_000)]  # a big heap: run()'s gc.collect() takes a while
    t0 = time.perf_counter()
    stats = loop.run("move", duration_s=0.2)
    assert time.perf_counter() - t0 > 0.2  # the setup came before the first tick was due
    del ballast
    assert stats.ticks >= 5, stats  # not one late tick and the end (the setup is not its time)
    assert "SCHED_FIFO 10" in stats.scheduling  # granted, or "refused" without privilege
    assert "CPUs [0]" in stats.scheduling
    after = (
        os.sched_getscheduler(0),
        os.sched_getaffinity(0),
        gc.isenabled(),
        sys.getswitchinterval(),
    )
    assert after == before
    assert gc.get_freeze_count() == 0
    assert stats.policy_calls >= 1 and len(stats.tick_compute_ns) == stats.ticks
    assert loop._worker is None  # a run on its own (no `with loop:`) stops its worker


def test_loop_config_rejects_an_unknown_worker_and_priority():
    with pytest.raises(ConfigError, match="policy_worker"):
        LoopConfig(policy_worker="fork")
    with pytest.raises(ConfigError, match="realtime_priority"):
        LoopConfig(realtime_priority=120)


class SleepyRamp(RampPolicy):
    """A RampPolicy that takes ``sleep_s`` per call; module level, so a process can build it."""

    def __init__(self, sleep_s=0.05, fail=False, **kw):
        super().__init__(**kw)
        self.sleep_s, self.fail = sleep_s, fail

    def act(self, obs, instruction):
        time.sleep(self.sleep_s)
        if self.fail:
            raise ValueError("bad weights in the child")
        return super().act(obs, instruction)


def failing_factory():
    raise FileNotFoundError("policy.onnx = 'missing.onnx' not found")


class ReportingRamp(RampPolicy):
    """A RampPolicy that says what runs it, as an ONNX policy names its execution provider."""

    def provider_report(self):
        return f"runs in pid {os.getpid()}"


def test_the_loop_reports_what_runs_the_policy_from_the_process_it_runs_in():
    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock, max_age_ns=10**12)
    config = LoopConfig(rate_hz=100, policy_rate_hz=100, policy_worker="process")
    loop = ControlLoop(sync, None, RecordingArm(buf, clock), safety(), measure, clock=clock,
                       config=config, policy_factory=ReportingRamp)  # fmt: skip
    assert loop.policy_report() is None  # no process yet
    try:
        loop.warm_up(sync.observe(clock.now_ns()))
        child = loop._worker.pid
    finally:
        loop.close()
    assert child != os.getpid() and loop.policy_report() == f"runs in pid {child}"
    inline = ControlLoop(sync, ReportingRamp(), RecordingArm(buf, clock), safety(), measure)
    assert inline.policy_report() == f"runs in pid {os.getpid()}"
    silent = ControlLoop(sync, RampPolicy(), RecordingArm(buf, clock), safety(), measure)
    assert silent.policy_report() is None


def test_a_policy_process_slower_than_a_tick_never_delays_one_and_its_newest_chunk_is_used():
    import functools

    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock, max_age_ns=10**12)
    arm = RecordingArm(buf, clock)
    factory = functools.partial(SleepyRamp, sleep_s=0.05, horizon=8)  # 50 ms against 10 ms
    loop = ControlLoop(sync, None, arm, safety(), measure, clock=clock, policy_factory=factory,
                       config=LoopConfig(rate_hz=100, policy_rate_hz=50, ensemble_decay=None,
                                         policy_worker="process"))  # fmt: skip
    try:
        loop.warm_up(sync.observe(clock.now_ns()))
        pid = loop._worker.pid
        assert pid != os.getpid()
        loop.start("move")
        t0 = clock.now_ns()
        for k in range(4):  # each tick sends at once; the child is still computing
            buf.push(clock.now_ns(), np.full(2, 0.01 * (k + 1), np.float32))
            loop.tick(clock.now_ns())
            clock.advance(10 * MS)
        assert len(arm.sent) == 4 and loop.stats.policy_calls == 0
        assert loop.stats.hold_reasons == {"no_chunk": 4}
        # tick 0 sent its observation; tick 2's waited in the parent for the child
        assert loop.stats.replaced_requests == 0
        assert loop._worker.wait_idle(5.0)  # tick 0's chunk is back; tick 2's request is sent
        assert loop._worker.wait_idle(5.0)  # and answered
        command, chunk = loop.tick(clock.now_ns())  # t0 + 40 ms
        assert chunk is not None and chunk.t_ns == t0 + 20 * MS  # the newest observation's
        np.testing.assert_allclose(chunk.actions[0, :2], [0.03 + 0.01] * 2, atol=1e-6)
        k = (clock.now_ns() - chunk.t_ns) // (10 * MS)
        np.testing.assert_allclose(arm.sent[-1][:2], chunk.actions[k, :2], atol=1e-6)
        assert loop.stats.policy_calls == 2 and loop.stats.policy_age_ns[-1] == 20 * MS
    finally:
        loop.close()
    assert loop._worker is None


def test_a_policy_process_reports_its_failures_in_the_loop():
    import functools

    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock, max_age_ns=10**12)
    config = LoopConfig(rate_hz=100, policy_rate_hz=100, policy_worker="process")
    with pytest.raises(ConfigError, match="policy_factory"):
        ControlLoop(sync, None, RecordingArm(buf, clock), safety(), measure, config=config)
    # the factory fails in the child: its error reaches the caller
    loop = ControlLoop(sync, None, RecordingArm(buf, clock), safety(), measure, clock=clock,
                       config=config, policy_factory=failing_factory)  # fmt: skip
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        loop.warm_up(sync.observe(clock.now_ns()))
    loop.close()
    # the policy raises in the child: the tick raises it
    factory = functools.partial(SleepyRamp, sleep_s=0.0, fail=True)
    loop = ControlLoop(sync, None, RecordingArm(buf, clock), safety(), measure, clock=clock,
                       config=config, policy_factory=factory)  # fmt: skip
    loop.start("move")
    with pytest.raises(ValueError, match="bad weights in the child"):
        loop.tick(clock.now_ns())  # raises here if the child was quick
        assert loop._worker.wait_idle(5.0)
        clock.advance(10 * MS)
        loop.tick(clock.now_ns())
    # the child dies: the next tick says so instead of waiting for it
    loop._worker._proc.kill()
    loop._worker._proc.join(5.0)
    clock.advance(10 * MS)
    with pytest.raises(RuntimeError, match="policy process .* exited"):
        for _ in range(3):
            loop.tick(clock.now_ns())
            clock.advance(10 * MS)
    loop.close()


def logged_ramp(log_path, **kw):
    """A RampPolicy factory that appends the pid it runs in to ``log_path``: one line a load."""
    with open(log_path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return RampPolicy(**kw)


def test_a_policy_process_serves_every_run_of_its_loop_and_exits_when_the_loop_closes(tmp_path):
    """Issue 14: each run used to stop the process; the next loaded the policy again, and its
    first call, never warmed up (here 1 s, longer than a run), left the run without a chunk."""
    import functools

    loads = tmp_path / "loads"
    factory = functools.partial(logged_ramp, str(loads), hang_call=1, hang_s=1.0)
    buf, sync = rig(ManualClock(0), max_age_ns=10**12)
    loop = ControlLoop(sync, None, RecordingArm(buf, None), safety(), measure,
                       config=LoopConfig(rate_hz=100, policy_rate_hz=20, policy_worker="process"),
                       policy_factory=factory)  # fmt: skip
    with loop:
        loop.warm_up(sync.observe(loop.clock.now_ns()))  # the slow first call
        worker = loop._worker
        runs = [loop.run(text, duration_s=1.0) for text in ("move", "move again")]
        assert loop._worker is worker and worker._proc.is_alive()
    assert loop._worker is None and not worker._proc.is_alive()  # no process left behind
    assert loads.read_text().split() == [str(worker.pid)]  # loaded once, in the child
    for stats in runs:  # the second run is served from its start as the first is
        assert stats.policy_calls >= 1, stats.summary()
        assert stats.hold_reasons.get("no_chunk", 0) < stats.ticks, stats.summary()
        assert stats.stop_reason == "duration reached"


def test_a_kept_thread_worker_serves_the_next_run_and_close_stops_it():
    buf, sync = rig(ManualClock(0), max_age_ns=10**12)
    policy = RampPolicy()
    loop = make_loop(sync, policy, RecordingArm(buf, None), rate_hz=100, policy_rate_hz=100,
                     policy_worker="thread")  # fmt: skip
    first = loop.run("move", duration_s=0.2, keep_worker=True)
    worker = loop._worker
    second = loop.run("move again", duration_s=0.2, keep_worker=True)
    assert loop._worker is worker and worker._thread.is_alive()
    assert first.policy_calls >= 1 and second.policy_calls >= 1
    loop.close()
    assert loop._worker is None and not worker._thread.is_alive()


def test_a_new_instruction_drops_the_request_the_worker_had_not_started():
    """A request kept while the worker computes belongs to the instruction that asked for it."""
    import functools

    from mmrobot.deploy.workers import PolicyProcess, PolicyWorker

    clock = ManualClock(1_000 * MS)
    _, sync = rig(clock, max_age_ns=10**12)
    obs = sync.observe(clock.now_ns())
    gated = GatedPolicy()
    thread = PolicyWorker(gated)
    process = PolicyProcess(functools.partial(SleepyRamp, sleep_s=0.3))
    try:
        assert not thread.submit(1, obs, "move")
        end = time.monotonic() + 5.0
        while not thread._busy and time.monotonic() < end:  # taken; the gate keeps it busy
            time.sleep(0.001)
        assert not process.submit(1, obs, "move")  # sent at once: the child is idle
        for worker in (thread, process):
            worker.submit(2, obs, "move")  # kept: the worker is busy
            worker.reset()  # a new instruction: request 2 is dropped
        gated.gate.set()
        for worker in (thread, process):
            assert worker.wait_idle(5.0)
            assert [g for g, _, _ in worker.poll()] == [1]
    finally:
        thread.close()
        process.close()


def test_a_policy_process_that_died_between_instructions_is_replaced_at_the_next_one():
    import functools

    buf, sync = rig(ManualClock(0), max_age_ns=10**12)
    factory = functools.partial(SleepyRamp, sleep_s=0.0)
    loop = ControlLoop(sync, None, RecordingArm(buf, None), safety(), measure,
                       config=LoopConfig(rate_hz=100, policy_rate_hz=20, policy_worker="process"),
                       policy_factory=factory)  # fmt: skip
    with loop:
        first = loop.run("move", duration_s=0.2)
        dead = loop._worker
        dead._proc.kill()
        dead._proc.join(5.0)
        second = loop.run("move again", duration_s=0.5)
        assert loop._worker is not dead and loop._worker.alive
        assert loop._worker.pid != dead.pid
    assert first.policy_restarts == 0 and second.policy_restarts == 1
    assert second.policy_calls >= 1, second.summary()  # the new process served the run


class ResetLoggingPolicy(GatedPolicy):
    """A gated policy that logs when its calls and its resets begin and end."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.events = []

    def act(self, obs, instruction):
        self.events.append("act")
        out = super().act(obs, instruction)
        self.events.append("act done")
        return out

    def reset(self):
        self.events.append("reset")


def test_a_thread_worker_resets_its_policy_only_after_the_call_that_outlived_start():
    """start() waits a bounded time for the worker; a call still running then must finish
    before policy.reset() runs, or the reset would race the call."""
    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock, max_age_ns=10**12)
    policy = ResetLoggingPolicy()
    loop = make_loop(sync, policy, RecordingArm(buf, clock), clock=clock, rate_hz=100,
                     policy_rate_hz=100, policy_worker="thread", watchdog_periods=2)  # fmt: skip
    try:
        loop.start("move")
        policy.events.clear()
        loop.tick(clock.now_ns())  # the worker takes the request and waits at the gate
        end = time.monotonic() + 5.0
        while policy.events != ["act"] and time.monotonic() < end:
            time.sleep(0.001)
        loop.start("move again")  # gives up waiting after 2 periods, with the call running
        assert policy.events == ["act"]
        policy.gate.set()
        assert loop._worker.wait_idle(5.0)
        assert policy.events == ["act", "act done", "reset"]
    finally:
        policy.gate.set()
        loop.close()
