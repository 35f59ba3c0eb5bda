"""DriverHost: real drivers in a spawned process against pty emulators in this one, their
samples read here from shared memory; errors, health, crashes and cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError, DeviceNotConnectedError
from mmrobot.drivers import parse_rig
from mmrobot.drivers.emulators import FT300Emulator
from mmrobot.drivers.health import Health
from mmrobot.drivers.host import DriverHost, hostable_drivers

SHM = Path("/dev/shm")
ROOT = Path(__file__).resolve().parents[2]
WRENCH = (1.5, -2.0, 10.0, 0.05, -0.02, 0.3)
SERVO = '{ id = 1, model = "XM430-W350", joint = "j" }'


def segments() -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("mmrobot-")}


def ft_rig(port: str):
    entry = {"kind": "ft300", "name": "wrist_ft", "port": port}
    return parse_rig({"driver": [entry]}, source="drivers/ft.toml")


def test_which_drivers_move_and_why_the_others_stay():
    from mmrobot.core._toml import tomllib

    rig = parse_rig(
        tomllib.loads(
            textwrap.dedent(f"""
            [[driver]]
            kind = "ft300"
            name = "ft_plain"
            port = "/dev/null"
            [[driver]]
            kind = "ft300"
            name = "ft_payload"
            port = "/dev/null"
            stream = {{ name = "ft2" }}
            payload = {{ mass_kg = 0.5 }}
            [[driver]]
            kind = "dynamixel"
            name = "arm"
            port = "/dev/ttyARM"
            servos = [{SERVO}]
            [[driver]]
            kind = "ft300"
            name = "off"
            port = "/dev/null"
            enabled = false
            stream = {{ name = "ft3" }}
            [[actuator]]
            kind = "dynamixel"
            name = "arm_goal"
            port = "/dev/ttyARM"
            servos = [{SERVO}]
            """)
        ),
        source="drivers/mixed.toml",
    )
    hosted, stay = hostable_drivers(rig)
    assert hosted == ["ft_plain"]
    assert stay == {
        "ft_payload": "gravity compensation needs the joint readings",
        "arm": "on the actuator's bus",
    }


def test_the_child_streams_into_shared_memory_on_this_process_clock(tmp_path):
    before = segments()
    with FT300Emulator(WRENCH, noise_force_n=0.0, link=tmp_path / "ft") as emu:
        host = DriverHost(ft_rig(emu.port), ["wrist_ft"])
        (ft,) = host.drivers
        assert ft.name == "wrist_ft" and ft.specs[0].name == "ft"
        assert len(segments() - before) == 1  # made here, before the child exists
        with host:
            assert host.alive and host.pid != os.getpid()
            buf = ft.buffers["ft"]
            end = time.monotonic() + 10
            while buf.count < 20 and time.monotonic() < end:
                time.sleep(0.02)
            t, value = buf.latest()
            # CLOCK_MONOTONIC is one clock for both processes: the stamp is a few ms old here
            assert 0 <= time.monotonic_ns() - t < 500_000_000
            assert value == pytest.approx(WRENCH, abs=0.02)
            value, age, ok = buf.value_at(time.monotonic_ns())
            assert ok and value.shape == (10, 6)
            assert ft.health is Health.OK and ft.stats.samples >= 20
            with pytest.raises(Exception, match="reading side"):
                buf.push(t + 1, np.zeros(6))
        assert not host.alive and host.exitcode == 0
    assert segments() == before


def thread_cpus(pid: int) -> list[str]:
    """The CPUs each thread of ``pid`` may run on (from /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                out.append(line.split(":", 1)[1].strip())
    return out


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux CPU affinity")
def test_the_child_and_its_reader_threads_run_on_the_cpus_asked_for(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    with FT300Emulator(WRENCH, link=tmp_path / "ft") as emu:
        with DriverHost(ft_rig(emu.port), ["wrist_ft"], cpu_affinity=[cpu]) as host:
            assert os.sched_getaffinity(host.pid) == {cpu}
            threads = thread_cpus(host.pid)
            assert len(threads) >= 2, threads  # the main thread and the F/T reader at least
            assert set(threads) == {str(cpu)}, threads
        # a CPU the machine does not have: a clear error at start, nothing left behind
        before = segments()
        host = DriverHost(ft_rig(emu.port), ["wrist_ft"], cpu_affinity=[4096])
        with pytest.raises(ConfigError, match=r"driver_cpu_affinity \[4096\].*allows CPUs"):
            host.start()
        host.close()
        assert segments() == before


def test_a_missing_port_raises_the_drivers_own_error_here(tmp_path):
    before = segments()
    host = DriverHost(ft_rig(str(tmp_path / "nope")), ["wrist_ft"])
    with pytest.raises(DeviceNotConnectedError, match="nope") as info:
        host.start()
    assert "driver process" in " ".join(getattr(info.value, "__notes__", []))
    assert segments() == before


def test_a_killed_child_reads_disconnected_restarts_and_its_segments_go_at_close(tmp_path):
    before = segments()
    with FT300Emulator(WRENCH, link=tmp_path / "ft") as emu:
        host = DriverHost(ft_rig(emu.port), ["wrist_ft"]).start()
        buf = host.drivers[0].buffers["ft"]
        try:
            assert host.restart_if_dead() is False
            assert host.drivers[0].health in (Health.OK, Health.STALE)
            os.kill(host.pid, signal.SIGKILL)
            wait_until(lambda: not host.alive)
            health, stats = host.health()["wrist_ft"]
            assert health is Health.DISCONNECTED and "exited (code -9)" in stats.last_error
            killed_ns = time.monotonic_ns()
            assert host.restart_if_dead() is True and host.alive and host.restarts == 1
            end = time.monotonic() + 10  # the same reader sees the new child's samples
            while (buf.latest() or (0,))[0] <= killed_ns and time.monotonic() < end:
                time.sleep(0.02)
            assert buf.latest()[0] > killed_ns and buf.value_at(time.monotonic_ns())[2]
        finally:
            host.close()
    assert segments() == before


PARENT = """
import sys, time
from mmrobot.drivers import parse_rig
from mmrobot.drivers.emulators import FT300Emulator
from mmrobot.drivers.host import DriverHost

emu = FT300Emulator((0.0,) * 6, link=sys.argv[1]).start()
rig = parse_rig({"driver": [{"kind": "ft300", "name": "ft", "port": emu.port}]}, source="t")
host = DriverHost(rig, ["ft"]).start()
print(host.pid, host.drivers[0].buffers["ft"].name, flush=True)
time.sleep(60)
"""


def test_the_child_exits_and_the_segments_go_when_the_parent_is_killed(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "ft")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        child_pid, name = parent.stdout.readline().split()
        assert (SHM / name).exists()
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        end = time.monotonic() + 15
        while time.monotonic() < end and ((SHM / name).exists() or _alive(int(child_pid))):
            time.sleep(0.1)
        assert not _alive(int(child_pid)), "the driver process outlived its parent"
        assert not (SHM / name).exists(), "the killed parent's segment was not unlinked"
    finally:
        parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"


def wait_until(done, timeout_s: float = 10.0) -> None:
    end = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)
