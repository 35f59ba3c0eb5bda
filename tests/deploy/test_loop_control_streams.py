"""Ticks between policy calls read only the streams the command needs (control_streams)."""

import numpy as np
import pytest
from test_loop import MS, RampPolicy, RecordingArm, measure, safety

from mmrobot.core import ConfigError, ManualClock, StreamSpec
from mmrobot.deploy.loop import ControlLoop, LoopConfig
from mmrobot.sync import StreamBuffer, Synchronizer


class CountingSync(Synchronizer):
    """The real synchronizer, counting which observation each tick took."""

    def __init__(self, buffers):
        super().__init__(buffers)
        self.full = self.latest = 0

    def observe(self, t_ns):
        self.full += 1
        return super().observe(t_ns)

    def observe_latest(self, t_ns, streams):
        self.latest += 1
        return super().observe_latest(t_ns, streams)


class HistoryRamp(RampPolicy):
    """RampPolicy on the newest row of a joint history window; keeps what it was shown."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.shown = []

    def act(self, obs, instruction):
        self.shown.append({k: v.shape for k, v in obs.values.items()})
        latest = obs.values["joints"][-1]
        return super().act(type(obs)(obs.t_ns, {"joints": latest}, obs.ages_ns, obs.valid), "")


def _history_rig(clock):
    joints = StreamSpec("joints", "joints", (2,), "float32", 100.0, "interp", 50 * MS, history=3)
    camera = StreamSpec("cam", "camera", (4, 4, 3), "uint8", 20.0, "causal", 100 * MS)
    bufs = [StreamBuffer(joints, 64), StreamBuffer(camera, 16)]
    bufs[0].push(clock.now_ns(), np.zeros(2, np.float32))
    bufs[1].push(clock.now_ns(), np.zeros((4, 4, 3), np.uint8))
    return bufs


def _commands_with(control_streams):
    clock = ManualClock(1_000 * MS)
    bufs = _history_rig(clock)
    sync = CountingSync(bufs)
    policy = HistoryRamp(horizon=8)
    arm = RecordingArm(bufs[0], clock)

    def to_command(action, obs):  # as RobotSession's: the newest joint sample, any shape
        j = obs.values["joints"]
        return action + 0.1 * (j[-1] if j.ndim == 2 else j)[[0, 1, 0]]

    loop = ControlLoop(
        sync,
        policy,
        arm,
        safety(),
        lambda obs: np.concatenate([obs.values["joints"][-1], [0.5]]),
        to_command=to_command,
        config=LoopConfig(rate_hz=100, policy_rate_hz=20, ensemble_decay=0.1),
        clock=clock,
        control_streams=control_streams,
    )
    loop.start("move")
    for k in range(20):
        clock.advance(10 * MS)
        bufs[0].push(clock.now_ns() - 3 * MS, arm.sent[-1][:2] if arm.sent else np.zeros(2))
        if k % 5 == 0:
            bufs[1].push(clock.now_ns() - 2 * MS, np.full((4, 4, 3), k, np.uint8))
        loop.tick(clock.now_ns())
    return np.array(arm.sent), sync, policy, loop.stats


def test_ticks_between_policy_calls_read_only_the_command_streams_and_send_the_same():
    full, sync_full, _, stats_full = _commands_with(None)
    light, sync_light, policy, stats_light = _commands_with(["joints"])
    np.testing.assert_array_equal(light, full)  # the same commands, bit for bit
    assert sync_full.full == 20 + 1 and sync_full.latest == 0  # + start()
    assert sync_light.full == 4 + 1 and sync_light.latest == 16  # policy ticks: every 5th
    # the policy still sees every stream, with the history window
    assert policy.shown and all(s == {"joints": (3, 2), "cam": (4, 4, 3)} for s in policy.shown)
    assert stats_light.ages_ns == stats_full.ages_ns  # ages of every stream, every tick
    with pytest.raises(ConfigError, match=r"control_streams \['nope'\]"):
        ControlLoop(sync_light, policy, None, safety(), measure, control_streams=["nope"])
