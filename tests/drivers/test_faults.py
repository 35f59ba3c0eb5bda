"""Faults end to end: missing port, permission denied, unplug and replug, silent servo."""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import pytest

from mmrobot.core.errors import DeviceNotConnectedError, DeviceTimeoutError
from mmrobot.drivers import Health, parse_rig
from mmrobot.drivers._serial import open_serial
from mmrobot.drivers.emulators import DynamixelEmulator, FT300Emulator, LD06Emulator
from mmrobot.sync import Synchronizer


def _wait(pred, timeout_s=5.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_missing_port_names_port_and_fix():
    rig = parse_rig(
        {
            "driver": [
                {
                    "kind": "dynamixel",
                    "name": "arm",
                    "port": "/dev/ttyUSB97",
                    "servos": [{"id": 1, "model": "XM430-W350", "joint": "j1"}],
                }
            ]
        },
        source="drivers/arm.toml",
    )
    (drv,) = rig.build_drivers()
    with pytest.raises(DeviceNotConnectedError) as e:
        drv.open()
    assert "'/dev/ttyUSB97' not found; plug the device in or set `port` in drivers/arm.toml" in str(
        e.value
    )
    assert drv.health is Health.CLOSED and not drv.is_open


def _open_error(port: str) -> str:
    try:
        open_serial(port, 115200, timeout_s=0.1)
    except DeviceNotConnectedError as e:
        return str(e)
    return "opened"


def test_permission_denied_names_port_and_fix():
    """As an unprivileged user (root bypasses file modes, so a forked child drops to 'nobody')."""
    folder = tempfile.mkdtemp(prefix="mmrobot-perm-")  # world-traversable, unlike pytest's tmp_path
    port = os.path.join(folder, "ttyUSB0")
    try:
        os.chmod(folder, 0o755)
        with open(port, "wb"):
            pass
        os.chmod(port, 0o000)
        if os.geteuid() != 0:
            message = _open_error(port)
        else:
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:  # child: drop privileges, try, report, exit without pytest's cleanup
                try:
                    os.close(r)
                    os.setgid(65534)
                    os.setuid(65534)
                    os.write(w, _open_error(port).encode())
                finally:
                    os._exit(0)
            os.close(w)
            chunks = []
            while chunk := os.read(r, 4096):
                chunks.append(chunk)
            os.close(r)
            os.waitpid(pid, 0)
            message = b"".join(chunks).decode()
    finally:
        os.unlink(port)
        os.rmdir(folder)
    if "not found" in message:
        pytest.skip("the temp folder is not reachable by an unprivileged user here")
    assert f"permission denied opening port {port!r}" in message
    assert "dialout" in message


def test_unplug_marks_stream_invalid_and_driver_reconnects(tmp_path):
    with FT300Emulator((1.0, 2.0, 3.0, 0.0, 0.0, 0.0), link=tmp_path / "ft") as emu:
        (drv,) = parse_rig(
            {
                "driver": [
                    {
                        "kind": "ft300",
                        "name": "ft",
                        "port": emu.port,
                        "reconnect_min_s": 0.02,
                        "reconnect_max_s": 0.2,
                    }
                ]
            }
        ).build_drivers()
        sync = Synchronizer(list(drv.buffers.values()))
        with drv:
            assert drv.wait_for_samples(10)
            assert sync.observe(drv.clock.now_ns()).valid["ft"]
            emu.unplug()
            assert _wait(lambda: drv.health is Health.DISCONNECTED)
            assert "disconnected" in (drv.stats.last_error or "")
            n_before, frames_before = drv.stats.samples, drv.stats.frames
            time.sleep(0.2)  # longer than the stream's max_age (50 ms)
            assert not sync.observe(drv.clock.now_ns()).valid["ft"]
            assert drv.stats.samples == n_before
            assert not os.path.exists(emu.port)
            emu.plug()  # a new pty behind the same link, like udev's by-id name
            assert _wait(lambda: drv.stats.reconnects >= 1)
            assert drv.wait_for_samples(n_before + 10)
            assert drv.stats.frames >= frames_before + 10  # counters survive the reconnect
            assert _wait(lambda: drv.health is Health.OK)
            assert sync.observe(drv.clock.now_ns()).valid["ft"]
            _, value = drv.latest()
            assert value[:3] == pytest.approx([1.0, 2.0, 3.0], abs=1e-3)
            assert drv.stats.errors == 0


def test_scheduled_unplug_and_replug_of_a_streaming_lidar(tmp_path):
    with LD06Emulator(link=tmp_path / "ld06", unplug_after_s=0.6, replug_after_s=0.4) as emu:
        (drv,) = parse_rig(
            {"driver": [{"kind": "ld06", "name": "l", "port": emu.port, "reconnect_min_s": 0.02}]}
        ).build_drivers()
        with drv:
            assert drv.wait_for_samples(2)
            assert _wait(lambda: emu.unplugs == 1)
            assert _wait(lambda: drv.stats.reconnects >= 1, timeout_s=5)
            n = drv.stats.samples
            assert drv.wait_for_samples(n + 3)
            times, _ = drv.buffers["lidar"].window(0, 2**62)
        gaps = np.diff(times)
        assert gaps.max() >= 0.35e9  # the outage shows as a gap in the stream, not as stale data


def test_dynamixel_driver_reconnects_after_unplug(tmp_path):
    servos = [{"id": i, "model": "XM430-W350", "joint": f"j{i}"} for i in (1, 2, 3)]
    with DynamixelEmulator([(i, "XM430-W350") for i in (1, 2, 3)], link=tmp_path / "dxl") as emu:
        (drv,) = parse_rig(
            {
                "driver": [
                    {
                        "kind": "dynamixel",
                        "name": "arm",
                        "port": emu.port,
                        "servos": servos,
                        "reconnect_min_s": 0.02,
                        "response_timeout_s": 0.2,
                    }
                ]
            }
        ).build_drivers()
        with drv:
            assert drv.wait_for_samples(5)
            emu.unplug()
            assert _wait(lambda: drv.health is Health.DISCONNECTED)
            emu.plug()
            assert _wait(lambda: drv.stats.reconnects >= 1)
            n = drv.stats.samples
            assert drv.wait_for_samples(n + 5)


def test_silent_servo_fails_open_with_its_id(tmp_path):
    servos = [{"id": i, "model": "XM430-W350", "joint": f"j{i}"} for i in (1, 2, 3)]
    with DynamixelEmulator(
        [(i, "XM430-W350") for i in (1, 2, 3)], link=tmp_path / "dxl", silent_ids={2}
    ) as emu:
        (drv,) = parse_rig(
            {
                "driver": [
                    {
                        "kind": "dynamixel",
                        "name": "arm",
                        "port": emu.port,
                        "servos": servos,
                        "response_timeout_s": 0.3,
                        "retries": 0,
                    }
                ]
            },
            source="drivers/arm.toml",
        ).build_drivers()
        with pytest.raises(
            DeviceTimeoutError, match=r"servo id 2 .*did not answer ping.*drivers/arm.toml"
        ):
            drv.open()
        assert not drv.is_open


def test_reader_thread_survives_a_garbage_spewing_device(tmp_path):
    """An LD06 line with heavy corruption: counted, resynced, every point still on the room walls."""
    from mmrobot.drivers.emulators import Room

    room = Room()
    with LD06Emulator(
        room, link=tmp_path / "ld06", corrupt_rate=0.003, drop_rate=0.002, seed=5
    ) as emu:
        (drv,) = parse_rig(
            {"driver": [{"kind": "ld06", "name": "l", "port": emu.port}]}
        ).build_drivers()
        with drv:
            assert drv.wait_for_samples(4, timeout_s=5)
            _, clouds = drv.buffers["lidar"].window(0, 2**62)
            stats = drv.stats
    assert stats.checksum_errors > 0 and stats.errors == 0
    for cloud in clouds:
        rows = cloud[np.any(cloud != 0, axis=1)]
        err = np.abs(
            np.hypot(rows[:, 0], rows[:, 1]) - room.ranges(np.arctan2(rows[:, 1], rows[:, 0]))
        )
        assert err.max() < 0.002
