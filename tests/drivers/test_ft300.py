"""Robotiq FT 300 stream mode: frame codec, emulator, driver, tare."""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest

from mmrobot.drivers import parse_rig
from mmrobot.drivers.emulators import FT300Emulator
from mmrobot.drivers.protocols.ft300 import FrameDecoder, encode_frame, start_stream_request


def test_start_request_is_the_manual_frame():
    # FT 300 manual, data stream: "09 10 01 9A 00 01 02 02 00 CD CA"
    assert start_stream_request() == bytes.fromhex("0910019A0001020200CDCA")


def test_frame_scaling_hand_built():
    # fx = 1.23 N -> 123, mz = -0.5 N*m -> -500; CRC checked by the decoder
    body = b"\x20\x4e" + struct.pack("<6h", 123, 0, -981, 0, 0, -500)
    frame = encode_frame(np.array([1.23, 0.0, -9.81, 0.0, 0.0, -0.5]))
    assert frame[:14] == body
    (w,) = FrameDecoder().feed(frame)
    assert w.tolist() == pytest.approx([1.23, 0.0, -9.81, 0.0, 0.0, -0.5])


def test_decoder_drops_bad_crc_and_truncated_frames():
    a = encode_frame(np.array([1.0, 2, 3, 0.1, 0.2, 0.3]))
    b = encode_frame(np.array([-1.0, -2, -3, -0.1, -0.2, -0.3]))
    corrupt = bytearray(a)
    corrupt[5] ^= 0x40
    truncated = a[:9]
    dec = FrameDecoder()
    out = dec.feed(b"\x00\xff" + bytes(corrupt) + truncated + b)
    assert len(out) == 1 and out[0][0] == pytest.approx(-1.0)
    assert dec.checksum_errors >= 2
    assert dec.resyncs >= 1


def _rig(port: str, **extra):
    entry = {"kind": "ft300", "name": "wrist_ft", "port": port, **extra}
    return parse_rig({"driver": [entry]}, source="drivers/ft.toml")


def test_driver_reads_the_emulated_wrench_and_tares(tmp_path):
    wrench = (1.5, -2.0, 10.0, 0.05, -0.02, 0.3)
    with FT300Emulator(
        wrench, noise_force_n=0.02, noise_torque_nm=0.0005, link=tmp_path / "ft"
    ) as emu:
        (drv,) = _rig(emu.port).build_drivers()
        assert drv.specs[0].name == "ft" and drv.specs[0].shape == (6,)
        with drv:
            assert drv.wait_for_samples(30)
            times, values = drv.buffers["ft"].window(0, 2**62)
            assert values.mean(axis=0) == pytest.approx(wrench, abs=0.02)
            bias = drv.tare(20)
            assert bias == pytest.approx(wrench, abs=0.03)
            emu.set_wrench((0.0, 0.0, 12.0, 0.0, 0.0, 0.3))
            time.sleep(0.1)
            n0 = drv.stats.samples
            assert drv.wait_for_samples(n0 + 10)
            _, tared = drv.latest()
            assert tared == pytest.approx([-1.5, 2.0, 2.0, -0.05, 0.02, 0.0], abs=0.1)
            stats = drv.stats
        assert stats.checksum_errors == 0 and stats.errors == 0
        assert np.all(np.diff(times) > 0)
        # 100 Hz stream: stamps about 10 ms apart on average
        assert 5e6 < (times[-1] - times[0]) / (len(times) - 1) < 20e6
        deadline = time.monotonic() + 2.0
        while emu.streaming and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not emu.streaming  # close() sent the stop bytes


def test_driver_never_emits_a_corrupted_wrench(tmp_path):
    wrench = (3.0, 1.0, -4.0, 0.1, 0.2, -0.3)
    with FT300Emulator(
        wrench, link=tmp_path / "ft", corrupt_rate=0.01, drop_rate=0.005, seed=7
    ) as emu:
        (drv,) = _rig(emu.port).build_drivers()
        with drv:
            assert drv.wait_for_samples(60, timeout_s=5)
            _, values = drv.buffers["ft"].window(0, 2**62)
            stats = drv.stats
    assert np.abs(values - np.array(wrench, np.float32)).max() < 1e-3
    assert stats.checksum_errors > 0 and stats.errors == 0


def test_tare_on_open_zeroes_the_reading(tmp_path):
    with FT300Emulator((4.0, -1.0, 20.0, 0.2, 0.1, 0.0), link=tmp_path / "ft") as emu:
        (drv,) = _rig(emu.port, tare_on_open=True, tare_samples=10).build_drivers()
        with drv:
            assert drv.bias == pytest.approx([4.0, -1.0, 20.0, 0.2, 0.1, 0.0], abs=1e-3)
            n = drv.stats.samples
            assert drv.wait_for_samples(n + 5)
            _, w = drv.latest()
            assert w == pytest.approx(np.zeros(6), abs=1e-3)


def test_silent_sensor_fails_open_with_the_port_and_baud():
    from mmrobot.core.errors import DeviceTimeoutError
    from mmrobot.drivers.emulators import PtyEmulator

    with PtyEmulator() as mute:  # a port with nothing answering behind it
        (drv,) = _rig(mute.port, start_timeout_s=0.2).build_drivers()
        with pytest.raises(DeviceTimeoutError, match=r"FT 300 on .* did not answer .*19200 baud"):
            drv.open()
        assert not drv.is_open
