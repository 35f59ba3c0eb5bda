"""RobotSession with ``loop.driver_worker = "process"`` on the HIL rig: the cameras, lidar and
F/T drivers run in a process of their own and write shared memory, the joint reader stays on
the actuator's bus here, and the loop sees the same streams, valid, in the same order."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from hil_serving import ROOT, serving_hil

from mmrobot.core import ConfigError
from mmrobot.core.types import ActionChunk
from mmrobot.launch.schema import load_launch

SHM = Path("/dev/shm")


class HoldPolicy:
    """Zero motion, gripper open: an 8-step chunk per call."""

    def act(self, observation, instruction):
        return ActionChunk(
            observation.t_ns, np.tile(np.r_[np.zeros(6), 1.0], (8, 1)), period_ns=50_000_000
        )


@pytest.fixture(scope="module")
def hil_rig(tmp_path_factory):
    with serving_hil(tmp_path_factory.mktemp("hil")) as rig_path:
        yield rig_path


def segments() -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("mmrobot-")}


def launch_for(rig_path, checkpoint, driver_worker="process"):
    launch = load_launch(
        ROOT / "launch" / "hil.toml",
        [
            f'rig.file="{rig_path}"',
            f'policy.checkpoint="{checkpoint}"',
            "loop.rate_hz=50.0",
            "loop.policy_rate_hz=10.0",
            "loop.watchdog_periods=12",
            'loop.policy_worker="thread"',  # a policy object is given
            f'loop.driver_worker="{driver_worker}"',
        ],
    )
    # behaviour, not timing, is under test: a loaded CI machine must not trip the watchdog
    loop = launch.loop.model_copy(update={"watchdog_periods": 400})
    return launch.model_copy(update={"loop": loop})


def test_sensor_drivers_in_their_own_process_stream_the_same_spec(hil_rig, checkpoint):
    from mmrobot.drivers.rig import load_rig
    from mmrobot.launch.robot import RobotSession

    before = segments()
    launch = launch_for(hil_rig, checkpoint)
    cpu = max(os.sched_getaffinity(0))  # the driver process pinned to one allowed CPU
    launch = launch.model_copy(
        update={"loop": launch.loop.model_copy(update={"driver_cpu_affinity": [cpu]})}
    )
    session = RobotSession(launch, policy=HoldPolicy())
    try:
        host = session.driver_host
        assert host is not None and host.alive
        assert set(host.names) == {"scene_camera", "wrist_camera", "base_lidar", "wrist_ft"}
        assert session.drivers_here == {"arm": "on the actuator's bus"}
        # the observation spec is the in-process one: same streams, same order
        assert session.sync.specs == load_rig(hil_rig).specs()
        counts = {b.spec.name: b.count for b in session.sync.buffers}
        out = session.execute("hold still", max_seconds=1.5)
        obs = session.sync.observe(time.monotonic_ns())
        assert all(obs.valid.values()), obs.valid
        grew = {b.spec.name: b.count - counts[b.spec.name] for b in session.sync.buffers}
        assert all(n > 0 for n in grew.values()), grew
        assert out.reason == "completed" and out.steps >= 20
        assert "in their own process" in out.loop["drivers"]
        assert f"(pid {host.pid}) on CPUs [{cpu}]" in out.loop["drivers"]
        assert os.sched_getaffinity(host.pid) == {cpu}
        assert "arm here (on the actuator's bus)" in out.loop["drivers"]
        health = {d.name: d.health.value for d in session.drivers}
        assert set(health.values()) <= {"ok", "stale"}, health
        # a driver process that died between instructions is started again for the next
        os.kill(host.pid, signal.SIGKILL)
        wait_until(lambda: not host.alive)
        out = session.execute("hold on", max_seconds=1.0)
        assert out.reason == "completed" and out.loop["driver_restarts"] == 1
        assert os.sched_getaffinity(session.driver_host.pid) == {cpu}  # pinned again
        assert all(session.sync.observe(time.monotonic_ns()).valid.values())
    finally:
        session.close()
    assert not host.alive and host.exitcode == 0
    assert segments() == before


def test_driver_worker_is_validated(sim, robot):
    from mmrobot.core.clock import ManualClock
    from mmrobot.launch.robot import RobotSession

    with pytest.raises(ConfigError, match="'thread' or 'process'"):
        load_launch(ROOT / "launch" / "hil.toml", ["loop.driver_worker=forked"], check_files=False)
    with pytest.raises(ConfigError, match=r"a \[sim\] run's sensors are the simulation's"):
        load_launch(sim, ['loop.driver_worker="process"'])
    with pytest.raises(ConfigError, match='needs loop.driver_worker = "process"'):
        load_launch(
            ROOT / "launch" / "hil.toml",
            ['loop.driver_worker="thread"', "loop.driver_cpu_affinity=[0]"],
            check_files=False,
        )
    for name in ("hil.toml", "robot_example.toml"):  # the shipped rig launch files use it
        assert load_launch(ROOT / "launch" / name, check_files=False).loop.driver_worker == (
            "process"
        )
    # the driver process stamps with the machine's monotonic clock: a session on another
    # clock is refused before anything opens (robot_example's ports are /dev/null here)
    with pytest.raises(ConfigError, match="use MonotonicClock or loop.driver_worker"):
        RobotSession(load_launch(robot), clock=ManualClock())


def wait_until(done, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)
