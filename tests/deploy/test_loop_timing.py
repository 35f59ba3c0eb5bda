"""Where a tick's time goes: LoopStats' per-part wall times, CPU time and the send's bus time."""

import time

import numpy as np
from test_loop import MS, RampPolicy, RecordingArm, make_loop, rig

from mmrobot.core import ManualClock
from mmrobot.deploy.loop_config import TICK_PARTS

SEND_S = 0.004


class SlowArm(RecordingArm):
    """A device double whose send takes ``SEND_S`` (a slow bus) and reports its bus time."""

    last_send_ns = None

    def send(self, command):
        time.sleep(SEND_S)
        super().send(command)
        self.last_send_ns = (1_000, round(SEND_S * 1e9))


def test_every_real_time_tick_records_each_part_once_within_its_compute_time():
    buf, sync = rig(ManualClock(0), max_age_ns=10**12)
    loop = make_loop(sync, RampPolicy(), RecordingArm(buf, None), rate_hz=100, policy_rate_hz=50)
    stats = loop.run("move", duration_s=0.2)
    assert stats.ticks >= 1
    assert len(stats.tick_parts_ns) == len(stats.tick_cpu_ns) == stats.ticks
    parts = np.asarray(stats.tick_parts_ns)
    assert parts.shape == (stats.ticks, len(TICK_PARTS)) and (parts >= 0).all()
    # the parts lie inside the tick; the clocks differ (perf_counter, monotonic): 50 us slack
    assert (parts.sum(axis=1) <= np.asarray(stats.tick_compute_ns) + 50_000).all()
    assert stats.send_bus_ns == []  # this arm does not report its bus time
    summary = stats.summary()
    assert all(f"tick_{name}_p99_ms" in summary for name in TICK_PARTS)
    assert summary["sends_timed"] == 0


def test_a_slow_actuator_shows_in_the_send_part_and_in_no_other():
    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock)
    loop = make_loop(sync, RampPolicy(), SlowArm(buf, clock), clock=clock, rate_hz=100)
    loop.start("move")
    for _ in range(6):
        loop.tick(clock.now_ns())
        clock.advance(10 * MS)
    parts = np.asarray(loop.stats.tick_parts_ns) / 1e6
    send = TICK_PARTS.index("send")
    assert (parts[:, send] >= SEND_S * 1e3).all()
    assert np.median(np.delete(parts, send, axis=1), axis=0).max() < SEND_S * 1e3 / 2
    assert loop.stats.send_bus_ns == [(1_000, round(SEND_S * 1e9))] * 6
    summary = loop.stats.summary()
    assert summary["sends_timed"] == 6 and summary["sends_deferred"] == 0
    assert summary["send_write_p50_ms"] == SEND_S * 1e3
