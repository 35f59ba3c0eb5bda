"""Dynamixel Protocol 2.0: codec, emulator, driver and actuator, with ROBOTIS's SDK as a peer."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError, DeviceTimeoutError, LifecycleError, ProtocolError
from mmrobot.drivers import parse_rig
from mmrobot.drivers.dynamixel import DynamixelBus, ServoConfig, ServoConversion
from mmrobot.drivers.emulators import DynamixelEmulator
from mmrobot.drivers.protocols.dynamixel import (
    Inst,
    PacketDecoder,
    XAddr,
    build_packet,
    stuff,
    unstuff,
)

ARM = [(i, "XM430-W350") for i in range(1, 8)]
# Timeouts for an emulator on a shared 2-core machine (a real servo answers in < 1 ms).
SLACK = {"response_timeout_s": 0.2, "retries": 2}


def _servos(n: int = 7) -> list[dict]:
    out = [{"id": i, "model": "XM430-W350", "joint": f"j{i}"} for i in range(1, n)]
    out.append({"id": n, "model": "XM430-W350", "joint": "gripper", "unit": "m", "m_per_rad": 0.01})
    return out


# ----------------------------------------------------------------------------- codec


def test_ping_packet_matches_the_emanual_example():
    # e-Manual, Protocol 2.0, "Ping" example: ID 1 -> FF FF FD 00 01 03 00 01 19 4E
    assert build_packet(1, Inst.PING) == bytes.fromhex("FFFFFD0001030001194E")


def test_status_packet_of_the_emanual_ping_example_decodes():
    # e-Manual ping reply from ID 1, model 1030 (0x0406), firmware 0x26
    wire = bytes.fromhex("FFFFFD000107005500060426655D")
    (p,) = PacketDecoder().feed(wire)
    assert (p.id, p.instruction, p.error) == (1, Inst.STATUS, 0)
    assert struct.unpack("<HB", p.data) == (1030, 0x26)


def test_byte_stuffing_round_trip_and_length_counts_stuffed_bytes():
    params = b"\x74\x00\xff\xff\xfd\x11"
    wire = build_packet(3, Inst.WRITE, params)
    assert b"\xff\xff\xfd\xfd" in wire[7:]
    length = wire[5] | wire[6] << 8
    assert length == len(wire) - 7
    (p,) = PacketDecoder().feed(wire)
    assert p.params == params
    assert unstuff(stuff(params)) == params


def test_decoder_resyncs_after_garbage_and_counts_a_bad_crc():
    good = build_packet(2, Inst.READ, struct.pack("<HH", 132, 4))
    bad = bytearray(good)
    bad[-1] ^= 0x01
    dec = PacketDecoder()
    out = dec.feed(b"\x00\x13garbage" + bytes(bad) + good[:5]) + dec.feed(good[5:])
    assert [p.id for p in out] == [2]
    assert dec.checksum_errors == 1
    assert dec.resyncs >= 1


def test_tick_conversion_round_trips_with_sign_offset_and_metres():
    conv = ServoConversion(
        [
            ServoConfig(id=1, model="XM430-W350", joint="a", sign=-1, offset_rad=0.3),
            ServoConfig(id=2, model="XL330-M288", joint="g", unit="m", m_per_rad=0.02),
        ]
    )
    assert conv.to_joint(np.array([2048, 2048])).tolist() == pytest.approx([0.3, 0.0])
    # 1024 ticks = a quarter turn
    assert conv.to_joint(np.array([2048 + 1024, 3072]))[0] == pytest.approx(-np.pi / 2 + 0.3)
    assert conv.to_joint(np.array([2048, 3072]))[1] == pytest.approx(0.02 * np.pi / 2)
    values = np.array([-1.0, 0.01])
    assert conv.to_joint(conv.to_ticks(values)) == pytest.approx(values, abs=2 * np.pi / 4096)


# ----------------------------------------------------------------------------- SDK peer


@pytest.fixture()
def emulator(tmp_path):
    with DynamixelEmulator(ARM, link=tmp_path / "dxl", tau_s=0.02) as emu:
        yield emu


@pytest.fixture()
def emulator_process(tmp_path):
    """The emulator in its own process (`mmrobot emulate`), so the SDK's busy polling of the
    port cannot starve it of the GIL and its 34 ms timeouts hold on a loaded machine."""
    link = tmp_path / "dxl"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmrobot.cli",
            "emulate",
            "dynamixel",
            "--link",
            str(link),
            "--servos",
            "1-7:XM430-W350",
            "--position-noise",
            "0",
            "--duration",
            "60",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().startswith("dynamixel: /dev/pts/")
        yield str(link)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_robotis_sdk_talks_to_the_emulator(emulator_process, monkeypatch):
    """ROBOTIS's own dynamixel_sdk as an independent peer: ping, read, write, sync read."""
    sdk = pytest.importorskip("dynamixel_sdk")
    # The SDK waits 2 x LATENCY_TIMER (16 ms, the FTDI default) for a reply; an emulator
    # process on a busy 2-core machine can be descheduled longer than that.
    monkeypatch.setattr(sdk.port_handler, "LATENCY_TIMER", 150)
    port = sdk.PortHandler(emulator_process)
    assert port.openPort()
    assert port.setBaudRate(1_000_000)
    try:
        ph = sdk.PacketHandler(2.0)
        model, res, err = ph.ping(port, 3)
        assert (model, res, err) == (1020, sdk.COMM_SUCCESS, 0)
        _, res, _ = ph.ping(port, 42)
        assert res == sdk.COMM_RX_TIMEOUT
        res, err = ph.write1ByteTxRx(port, 3, XAddr.TORQUE_ENABLE, 1)
        assert (res, err) == (sdk.COMM_SUCCESS, 0)
        res, err = ph.write4ByteTxRx(port, 3, XAddr.GOAL_POSITION, 3000)
        assert (res, err) == (sdk.COMM_SUCCESS, 0)
        goal, res, _ = ph.read4ByteTxRx(port, 3, XAddr.GOAL_POSITION)
        assert (goal, res) == (3000, sdk.COMM_SUCCESS)
        # EEPROM is locked while torque is on: the servo answers with an Access Error (7)
        res, err = ph.write4ByteTxRx(port, 3, XAddr.MAX_POSITION_LIMIT, 4000)
        assert res == sdk.COMM_SUCCESS and err & 0x7F == 7
        time.sleep(1.0)  # 952 ticks at the 4.8 rad/s velocity limit take ~0.3 s, then tau = 50 ms
        group = sdk.GroupSyncRead(port, ph, XAddr.PRESENT_POSITION, 4)
        for i in (1, 2, 3):
            assert group.addParam(i)
        assert group.txRxPacket() == sdk.COMM_SUCCESS
        positions = [group.getData(i, XAddr.PRESENT_POSITION, 4) for i in (1, 2, 3)]
        assert positions[:2] == [2048, 2048]  # torque off: they stay put
        assert abs(positions[2] - 3000) <= 2  # torque on: tracked its goal
        # stuffing both ways: a goal whose bytes contain FF FF FD is written and read back
        writer = sdk.GroupSyncWrite(port, ph, XAddr.GOAL_POSITION, 4)
        assert writer.addParam(1, [0xFD, 0x0F, 0, 0])
        assert writer.txPacket() == sdk.COMM_SUCCESS
        goal, res, _ = ph.read4ByteTxRx(port, 1, XAddr.GOAL_POSITION)
        assert (goal, res) == (0x0FFD, sdk.COMM_SUCCESS)
    finally:
        port.closePort()


def test_our_bus_reads_what_the_sdk_wrote(emulator, monkeypatch):
    sdk = pytest.importorskip("dynamixel_sdk")
    monkeypatch.setattr(sdk.port_handler, "LATENCY_TIMER", 150)  # see the test above
    port = sdk.PortHandler(emulator.port)
    assert port.openPort()
    ph = sdk.PacketHandler(2.0)
    assert ph.write4ByteTxRx(port, 5, XAddr.GOAL_POSITION, 1234)[0] == sdk.COMM_SUCCESS
    port.closePort()
    bus = DynamixelBus(emulator.port)
    try:
        assert bus.ping(5) == (1020, 48)
        assert struct.unpack("<i", bus.read(5, XAddr.GOAL_POSITION, 4))[0] == 1234
        got = bus.sync_read([1, 5], XAddr.GOAL_POSITION, 4)
        assert {i: struct.unpack("<i", d)[0] for i, d in got.items()} == {1: 2048, 5: 1234}
        with pytest.raises(ProtocolError, match="id 5 refused write@48: access error"):
            bus.write(5, XAddr.TORQUE_ENABLE, b"\x01")
            bus.write(5, XAddr.MAX_POSITION_LIMIT, struct.pack("<I", 4000))
    finally:
        bus.close()


def test_silent_servo_times_out_naming_its_id(tmp_path):
    with DynamixelEmulator(ARM, link=tmp_path / "dxl", silent_ids={4}) as emu:
        bus = DynamixelBus(emu.port, timeout_s=0.3, retries=0)
        try:
            with pytest.raises(DeviceTimeoutError, match=r"servo id 4 .*did not answer"):
                bus.sync_read([1, 2, 3, 4, 5], XAddr.PRESENT_POSITION, 4)
            with pytest.raises(DeviceTimeoutError, match="id 4"):
                bus.ping(4)
        finally:
            bus.close()


# ----------------------------------------------------------------------------- driver + actuator


def _rig(port: str, **driver_extra):
    return parse_rig(
        {
            "driver": [
                {
                    "kind": "dynamixel",
                    "name": "arm",
                    "port": port,
                    "servos": _servos(),
                    **SLACK,
                    **driver_extra,
                }
            ],
            "actuator": [
                {
                    "kind": "dynamixel",
                    "name": "arm_goal",
                    "port": port,
                    "servos": _servos(),
                    **SLACK,
                }
            ],
        },
        source="drivers/arm.toml",
    )


def test_driver_streams_joints_and_actuator_moves_them(emulator):
    rig = _rig(emulator.port, extra_streams=True)
    (drv,) = rig.build_drivers()
    (act,) = rig.build_actuators()
    assert drv.specs[0].name == "joints" and drv.specs[0].shape == (7,)
    with pytest.raises(LifecycleError):
        drv.latest()
    with pytest.raises(LifecycleError):
        act.send(np.zeros(7))
    with drv, act:
        assert drv.wait_for_samples(10)
        _, first = drv.latest()
        assert first == pytest.approx(np.zeros(7), abs=1e-3)
        goal = np.array([0.5, -0.4, 0.3, -0.2, 0.1, 0.0, 0.008])
        act.send(goal)
        assert act.last_send_ns == act.bus.last_post_ns  # its post's (lock wait, write) ns
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            _, value = drv.latest()
            if np.allclose(value, goal, atol=2e-3):
                break
            time.sleep(0.02)
        assert value == pytest.approx(goal, abs=2e-3)
        assert emulator.servos[1].i32(XAddr.GOAL_POSITION) == 2048 + round(0.5 / (2 * np.pi / 4096))
        times, values = drv.buffers["joints"].window(0, 2**62)
        assert np.all(np.diff(times) > 0)
        assert "joints_velocity" in drv.buffers and "joints_current" in drv.buffers
        stats = drv.stats
        assert stats.samples > 20 and stats.checksum_errors == 0 and stats.errors == 0
        assert drv.clock_model.ready
    assert not any(s.torque_on for s in emulator.servos.values())  # torque off on close


def test_model_mismatch_names_servo_and_file(emulator):
    servos = _servos()
    servos[2]["model"] = "XL430-W250"
    rig = parse_rig(
        {"driver": [{"kind": "dynamixel", "name": "arm", "port": emulator.port, "servos": servos}]},
        source="drivers/arm.toml",
    )
    (drv,) = rig.build_drivers()
    with pytest.raises(
        ConfigError, match=r"servo id 3 .*XM430-W350.*drivers/arm.toml says XL430-W250"
    ):
        drv.open()
    assert not drv.is_open


def test_driver_survives_a_noisy_line(tmp_path):
    with DynamixelEmulator(
        ARM, link=tmp_path / "dxl", corrupt_rate=0.002, drop_rate=0.001, seed=3
    ) as emu:
        (drv,) = _rig(emu.port).build_drivers()
        with drv:
            assert drv.wait_for_samples(60, timeout_s=10)
            times, values = drv.buffers["joints"].window(0, 2**62)
            stats = drv.stats
        # servos are at rest: any corrupted position that slipped through would show up
        assert np.abs(values).max() < 1e-3
        assert stats.checksum_errors + stats.timeouts > 0
        assert stats.errors == 0
