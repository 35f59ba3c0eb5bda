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


def test_the_dynamixel_arm_reports_each_sends_lock_wait_and_write(tmp_path):
    from mmrobot.drivers import parse_rig
    from mmrobot.drivers.emulators import DynamixelEmulator
    from mmrobot.launch.robot import ArmCommandSink

    servos = [{"id": i, "model": "XM430-W350", "joint": f"j{i}"} for i in (1, 2)]
    servos.append({"id": 3, "model": "XM430-W350", "joint": "gripper", "min": -1.0, "max": 1.0})
    clock = ManualClock(1_000 * MS)
    buf, sync = rig(clock)
    with DynamixelEmulator([(i, "XM430-W350") for i in (1, 2, 3)], link=tmp_path / "dxl") as emu:
        spec = {"kind": "dynamixel", "name": "arm", "port": emu.port, "servos": servos}
        (actuator,) = parse_rig({"actuator": [spec]}, source="arm.toml").build_actuators()
        with actuator:
            loop = make_loop(sync, RampPolicy(), ArmCommandSink(actuator), clock=clock)
            loop.start("move")
            for _ in range(3):
                loop.tick(clock.now_ns())
                clock.advance(50 * MS)
    bus_ns = np.asarray(loop.stats.send_bus_ns)
    # nothing else uses the bus here: every goal is written at once, by the tick
    assert bus_ns.shape == (3, 2) and (bus_ns >= 0).all() and (bus_ns[:, 1] > 0).all()
    assert loop.stats.summary()["sends_deferred"] == 0
