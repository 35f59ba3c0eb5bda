"""Contract of every serial/camera driver kind against its emulator, and a whole rig in sync."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import numpy as np
import pytest

from mmrobot.core.errors import LifecycleError
from mmrobot.drivers import Health, load_rig, parse_rig
from mmrobot.drivers._cli import write_demo_video
from mmrobot.drivers.emulators import (
    DynamixelEmulator,
    FT300Emulator,
    LD06Emulator,
    RplidarEmulator,
)
from mmrobot.sync import Synchronizer

ROOT = Path(__file__).resolve().parents[2]
ARM = [{"id": i, "model": "XM430-W350", "joint": f"j{i}"} for i in range(1, 8)]


def _eventually(pred, timeout_s: float = 5.0) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


@contextlib.contextmanager
def _device(kind: str, tmp: Path):
    """Yields a rig entry for ``kind`` whose device is live for the block."""
    if kind == "camera":
        video = write_demo_video(tmp / "cam.avi", n_frames=10)
        yield {"kind": "camera", "name": "cam", "device": str(video), "loop": True}
        return
    emulators = {
        "dynamixel": lambda: DynamixelEmulator(link=tmp / "dev"),
        "ft300": lambda: FT300Emulator(link=tmp / "dev"),
        "rplidar": lambda: RplidarEmulator(link=tmp / "dev"),
        "ld06": lambda: LD06Emulator(link=tmp / "dev"),
    }
    with emulators[kind]() as emu:
        entry = {"kind": kind, "name": "dev", "port": emu.port}
        if kind == "dynamixel":
            entry.update(servos=ARM, response_timeout_s=0.2, retries=2)
        yield entry


@pytest.mark.parametrize("kind", ["camera", "dynamixel", "ft300", "rplidar", "ld06"])
def test_driver_contract(kind, tmp_path):
    with _device(kind, tmp_path) as entry:
        (drv,) = parse_rig({"driver": [entry]}).build_drivers()
        assert drv.health is Health.CLOSED
        assert tuple(drv.buffers) == tuple(s.name for s in drv.specs)
        with pytest.raises(LifecycleError):
            drv.latest()
        for _round in range(2):  # open, read, close; then again: drivers are reusable
            with drv:
                with pytest.raises(LifecycleError):
                    drv.open()
                n0 = drv.stats.samples
                assert drv.wait_for_samples(n0 + 2, timeout_s=5)
                for spec in drv.specs[:1]:
                    t_ns, value = drv.buffers[spec.name].latest()
                    assert value.shape == spec.shape and value.dtype == np.dtype(spec.dtype)
                    assert isinstance(t_ns, int)
                assert _eventually(lambda drv=drv: drv.health is Health.OK)
                st = drv.stats
                assert st.errors == 0 and st.samples >= 2 and st.last_sample_age_ns is not None
            assert drv.health is Health.CLOSED and not drv.is_open
            drv.close()  # closing twice is a no-op


def test_emulated_rig_end_to_end_in_sync(tmp_path):
    """drivers/emulated_rig.toml with its ports pointed at in-process emulators: every stream
    of the default observation spec is valid in one Synchronizer observation."""
    text = (ROOT / "drivers" / "emulated_rig.toml").read_text(encoding="utf-8")
    text = text.replace("/tmp/mmrobot-emu", str(tmp_path))
    for name, hue in (("scene", 10), ("wrist", 220)):
        write_demo_video(tmp_path / f"{name}.avi", n_frames=10, hue=hue)
    rig_file = tmp_path / "rig.toml"
    rig_file.write_text(text, encoding="utf-8")
    rig = load_rig(rig_file)
    with contextlib.ExitStack() as stack:
        stack.enter_context(DynamixelEmulator(link=tmp_path / "dynamixel"))
        stack.enter_context(RplidarEmulator(link=tmp_path / "rplidar"))
        stack.enter_context(FT300Emulator((0.0, 0.0, 5.0, 0.0, 0.0, 0.0), link=tmp_path / "ft300"))
        drivers = rig.build_drivers()
        (act,) = rig.build_actuators()
        for d in drivers:
            stack.enter_context(d)
        stack.enter_context(act)
        sync = Synchronizer([b for d in drivers for b in d.buffers.values()])
        assert {s.name for s in sync.specs} == {"scene_cam", "wrist_cam", "lidar", "ft", "joints"}
        for d in drivers:
            assert d.wait_for_samples(12 if d.specs[0].history > 1 else 2, timeout_s=5), d.name
        # every stream valid in one observation (polled: a loaded machine may stall a reader)
        end = time.monotonic() + 5.0
        while True:
            obs = sync.observe(drivers[0].clock.now_ns())
            if all(obs.valid.values()) or time.monotonic() > end:
                break
            time.sleep(0.01)
        assert all(obs.valid.values()), obs.valid
        for spec in sync.specs:
            assert obs.values[spec.name].shape == spec.obs_shape
        assert obs.values["ft"][-1][2] == pytest.approx(5.0, abs=0.05)
        act.send(np.zeros(7))
