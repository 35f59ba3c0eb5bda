"""RPLIDAR and LD06: codecs, revolution assembly, point clouds against the emulated room."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from mmrobot.drivers import Extrinsics, parse_rig, scan_to_points
from mmrobot.drivers.emulators import LD06Emulator, Room, RplidarEmulator
from mmrobot.drivers.lidar import RevolutionAssembler
from mmrobot.drivers.protocols import ld06, rplidar
from mmrobot.drivers.protocols.crc import crc8_ld06

# An emulator on a shared 2-core machine can be descheduled for a while; a real lidar answers
# GET_HEALTH in milliseconds.
SLACK = {"response_timeout_s": 5.0}


# ----------------------------------------------------------------------------- RPLIDAR codec


def test_rplidar_requests_and_descriptor_follow_the_protocol_document():
    assert rplidar.request(rplidar.Cmd.SCAN) == b"\xa5\x20"
    assert rplidar.request(rplidar.Cmd.GET_HEALTH) == b"\xa5\x52"
    # SCAN descriptor from LR001: A5 5A 05 00 00 40 81 (length 5, multiple-response mode, type 0x81)
    assert rplidar.encode_descriptor(5, 1, 0x81) == bytes.fromhex("A55A0500004081")
    assert rplidar.parse_descriptor(bytes.fromhex("A55A0500004081")) == (5, 1, 0x81)
    # a request with payload carries size and XOR checksum (motor PWM 660 on an A2)
    assert rplidar.request(0xF0, struct.pack("<H", 660)) == bytes(
        (0xA5, 0xF0, 2, 0x94, 0x02, 0xA5 ^ 0xF0 ^ 2 ^ 0x94 ^ 0x02)
    )


def test_rplidar_node_bits_hand_built():
    # quality 15, start flag; angle 90.0 deg (q6 = 5760); distance 1000.5 mm (q2 = 4002)
    q6, q2 = 5760, 4002
    node = bytes([(15 << 2) | 0b01, ((q6 & 0x7F) << 1) | 1, q6 >> 7, q2 & 0xFF, q2 >> 8])
    assert (
        rplidar.encode_nodes(np.array([90.0]), np.array([1000.5]), np.array([15]), np.array([True]))
        == node
    )
    dec = rplidar.NodeDecoder(lock_nodes=1)
    assert len(dec.feed(node)) == 0  # a node is released once its successor checks out
    nodes = dec.feed(
        rplidar.encode_nodes(np.array([90.5]), np.array([7.0]), np.array([1]), np.array([False]))
    )
    assert nodes.angle_deg.tolist() == [90.0]
    assert nodes.distance_mm.tolist() == [1000.5]
    assert nodes.quality.tolist() == [15] and nodes.start.tolist() == [True]


def _sweep(n: int = 720) -> tuple[np.ndarray, np.ndarray, bytes]:
    angles = (np.arange(n) * 0.5) % 360.0
    dists = 500.0 + (np.arange(n) % 97) * 10.0
    wire = rplidar.encode_nodes(angles, dists, np.full(n, 47), angles == 0.0)
    return angles, dists, wire


def test_rplidar_decoder_resyncs_after_garbage_in_chunks():
    angles, dists, wire = _sweep()
    dec = rplidar.NodeDecoder()
    cut = 5 * 200
    noisy = wire[:cut] + bytes([0x13, 0x00, 0x7F]) + wire[cut:]
    got_a, got_d = [], []
    for i in range(0, len(noisy), 37):
        out = dec.feed(noisy[i : i + 37])
        got_a += out.angle_deg.tolist()
        got_d += out.distance_mm.tolist()
    truth = set(zip(angles.tolist(), dists.tolist(), strict=True))
    assert set(zip(got_a, got_d, strict=True)) <= truth
    assert len(got_a) >= len(angles) - 8
    assert dec.resyncs >= 1


def test_rplidar_dropped_bytes_rarely_yield_a_wrong_node():
    """The standard scan format has no checksum: measure the false-accept rate of framing."""
    rng = np.random.default_rng(0)
    angles, dists, wire = _sweep(7200)
    arr = np.frombuffer(wire, np.uint8)
    keep = np.ones(arr.size, bool)
    keep[rng.choice(arr.size, 300, replace=False)] = False  # 300 bytes dropped mid-node
    dec = rplidar.NodeDecoder()
    out = dec.feed(arr[keep].tobytes())
    truth = set(zip(angles.tolist(), dists.tolist(), strict=True))
    wrong = sum(
        (a, d) not in truth
        for a, d in zip(out.angle_deg.tolist(), out.distance_mm.tolist(), strict=True)
    )
    assert dec.checksum_errors >= 240  # almost every drop is detected (two in one node count once)
    assert wrong <= 3  # <= 1 % of drops leak one wrong node
    assert len(out) >= 7200 - 300 * 5


# ----------------------------------------------------------------------------- LD06 codec


def test_ld06_packet_layout_and_crc():
    d = np.arange(12) * 100.0 + 200.0
    pkt = ld06.encode_packet(3600, 10.0, 18.8, d, np.full(12, 200), 29999)
    assert len(pkt) == 47 and pkt[:2] == b"\x54\x2c"
    assert struct.unpack_from("<HH", pkt, 2) == (3600, 1000)
    assert struct.unpack_from("<HH", pkt, 42) == (1880, 29999)
    assert pkt[46] == crc8_ld06(pkt[:46])
    (p,) = ld06.LD06Decoder().feed(pkt)
    assert p.angle_deg[0] == pytest.approx(10.0) and p.angle_deg[-1] == pytest.approx(18.8)
    assert p.angle_deg[6] == pytest.approx(10.0 + 6 * 0.8)
    assert p.distance_mm.tolist() == d.tolist() and p.timestamp_ms == 29999


def test_ld06_angles_wrap_through_zero():
    pkt = ld06.encode_packet(3600, 355.6, 4.4, np.full(12, 1000.0), np.full(12, 9), 5)
    (p,) = ld06.LD06Decoder().feed(pkt)
    assert p.angle_deg[0] == pytest.approx(355.6)
    assert p.angle_deg[-1] == pytest.approx(4.4)
    assert np.all((p.angle_deg < 360) & (p.angle_deg >= 0))


def test_ld06_crc_failure_is_counted_and_next_packet_found():
    a = ld06.encode_packet(3600, 0.0, 8.8, np.full(12, 1000.0), np.full(12, 1), 10)
    b = ld06.encode_packet(3600, 9.6, 18.4, np.full(12, 2000.0), np.full(12, 1), 13)
    bad = bytearray(a)
    bad[10] ^= 0x04
    dec = ld06.LD06Decoder()
    out = dec.feed(bytes(bad) + a[:20] + b)
    assert [p.timestamp_ms for p in out] == [13]
    assert dec.checksum_errors >= 2


# ----------------------------------------------------------------------------- geometry


def test_scan_to_points_bins_nearest_return_and_applies_extrinsics():
    angles = np.array([0.2, 0.7, 90.5, 180.0, 270.9])
    dists = np.array([2.0, 1.0, 3.0, 0.0, 1.5])  # 180 deg: no return
    ext = Extrinsics(translation_m=(0.1, 0.0, 0.3), rotation_rpy_rad=(0.0, 0.0, np.pi / 2))
    pts = scan_to_points(angles, dists, 360, ext)
    assert pts.shape == (360, 3) and pts.dtype == np.float32
    # bin 0: nearest of the two returns (1.0 m at 0.7 deg clockwise -> y negative), then yawed +90
    a = np.deg2rad(0.7)
    sensor = np.array([np.cos(a), -np.sin(a), 0.0])
    expected = np.array([-sensor[1], sensor[0], 0.0]) + [0.1, 0.0, 0.3]
    assert pts[0] == pytest.approx(expected, abs=1e-6)
    assert pts[180].tolist() == [0.0, 0.0, 0.0]
    assert np.count_nonzero(np.any(pts != 0, axis=1)) == 3
    # 90.5 deg clockwise = straight right of the sensor -> after +90 yaw, along +x
    assert pts[90] == pytest.approx(
        [0.1 + 3.0 * np.cos(np.deg2rad(0.5)), -3.0 * np.sin(np.deg2rad(0.5)), 0.3], abs=1e-6
    )


def test_revolution_assembler_cuts_at_wrap_and_drops_first_partial():
    asm = RevolutionAssembler()
    a = np.concatenate([np.arange(200, 360, 10.0), np.arange(0, 360, 10.0), np.arange(0, 50, 10.0)])
    revs = asm.feed(a, np.ones_like(a))
    assert len(revs) == 1 and revs[0][0].tolist() == np.arange(0, 360, 10.0).tolist()


def _median_interval(times: np.ndarray) -> float:
    """Median stamp interval: robust to a few intervals disturbed by a stalled process."""
    return float(np.median(np.diff(times)))


def _check_against_room(points: np.ndarray, room: Room, tol_m: float) -> int:
    rows = points[np.any(points != 0, axis=1)]
    ang = np.arctan2(rows[:, 1], rows[:, 0])
    expected = room.ranges(ang)
    err = np.abs(np.hypot(rows[:, 0], rows[:, 1]) - expected)
    assert err.max() < tol_m, err.max()
    return rows.shape[0]


def test_rplidar_driver_reads_room_scans(tmp_path):
    room = Room()
    with RplidarEmulator(room, link=tmp_path / "lidar", rotation_hz=10.0) as emu:
        rig = parse_rig(
            {"driver": [{"kind": "rplidar", "name": "base_lidar", "port": emu.port, **SLACK}]},
            source="drivers/l.toml",
        )
        (drv,) = rig.build_drivers()
        with drv:
            assert drv.wait_for_samples(7, timeout_s=10)
            assert drv.info is not None and drv.info.model == 0x18 and drv.info.firmware == (1, 29)
            assert drv.health_status.status == 0
            assert drv.motor_control_supported is False  # a pty refuses DTR: reported, not fatal
            times, clouds = drv.buffers["lidar"].window(0, 2**62)
            stats = drv.stats
    assert clouds.shape[1:] == (360, 3)
    # every point lies on the room's walls or boxes; a full turn fills most of the 360 bins (a
    # turn cut short by a stalled test process may have fewer)
    counts = [_check_against_room(cloud, room, tol_m=0.002) for cloud in clouds]
    assert np.median(counts) >= 300
    assert _median_interval(times) == pytest.approx(1e8, rel=0.3)  # 10 Hz
    assert stats.checksum_errors == 0 and stats.errors == 0


def test_ld06_driver_reads_room_scans_with_device_clock(tmp_path):
    room = Room(sensor_xy=(3.0, 2.0))
    with LD06Emulator(room, link=tmp_path / "ld06", clock_drift_ppm=100.0) as emu:
        ext = {"translation_m": [0.0, 0.0, 0.25]}
        rig = parse_rig(
            {
                "driver": [
                    {"kind": "ld06", "name": "base_lidar", "port": emu.port, "extrinsics": ext}
                ]
            },
            source="drivers/l.toml",
        )
        (drv,) = rig.build_drivers()
        with drv:
            assert drv.wait_for_samples(7, timeout_s=10)
            times, clouds = drv.buffers["lidar"].window(0, 2**62)
            assert drv.clock_model.ready
    counts = []
    for cloud in clouds:
        rows = cloud[np.any(cloud != 0, axis=1)]
        assert np.allclose(rows[:, 2], 0.25)
        lifted = cloud - np.float32([0, 0, 0.25]) * (cloud != 0)
        counts.append(_check_against_room(lifted, room, tol_m=0.002))
    assert np.median(counts) >= 300
    # stamps follow device time through the clock model: one turn (100 ms) apart, even while
    # the model is still learning the minimum transport delay
    assert _median_interval(times) == pytest.approx(1e8, rel=0.3)


def test_open3d_outlier_removal_zeroes_a_stray_point(tmp_path):
    pytest.importorskip("open3d")
    room = Room()
    with RplidarEmulator(room, link=tmp_path / "lidar") as emu:
        entry = {
            "kind": "rplidar",
            "name": "l",
            "port": emu.port,
            "outlier_neighbors": 8,
            "outlier_std_ratio": 1.0,
        }
        (drv,) = parse_rig({"driver": [entry]}).build_drivers()
        angles = np.arange(0, 360, 1.0) + 0.5
        dist_mm = room.ranges(-np.deg2rad(angles)) * 1000
        dist_mm[100] = 400.0  # a stray return far in front of the wall
        with_filter = drv._points(angles, dist_mm)
        plain = scan_to_points(angles, dist_mm / 1000, 360)
    assert np.any(plain[100] != 0)
    assert with_filter[100].tolist() == [0.0, 0.0, 0.0]
    assert np.count_nonzero(np.any(with_filter != 0, axis=1)) >= 300


def test_rplidar_in_error_state_is_reset_and_reported(tmp_path):
    with RplidarEmulator(link=tmp_path / "lidar", health=2) as emu:
        (drv,) = parse_rig(
            {"driver": [{"kind": "rplidar", "name": "l", "port": emu.port, **SLACK}]}
        ).build_drivers()
        from mmrobot.core.errors import DeviceNotConnectedError

        with pytest.raises(DeviceNotConnectedError, match="hardware error.*RESET"):
            drv.open()
        assert not drv.is_open and not emu.scanning


def test_rplidar_turns_arriving_in_one_read_get_distinct_stamps(tmp_path):
    """Three turns in one burst (a stalled reader): each is stamped at its own end."""
    with RplidarEmulator(link=tmp_path / "lidar", rotation_hz=10.0, samples_per_rev=100) as emu:
        entry = {"kind": "rplidar", "name": "l", "port": emu.port, **SLACK}
        (drv,) = parse_rig({"driver": [entry]}).build_drivers()
        with drv:
            emu.scanning = False  # hold the stream, then send 3.5 turns (1750 bytes) at once
            n0 = drv.stats.samples
            emu.send(emu.nodes_for(0, 100 * 3 + 50))
            assert drv.wait_for_samples(n0 + 2, timeout_s=10)
            times, _ = drv.buffers["lidar"].window(0, 2**62)
    # the burst's last two complete turns: 100 nodes apart at the 10 Hz period, not equal stamps
    assert np.diff(times)[-1] == pytest.approx(1e8, rel=0.05)


def test_open3d_voxel_downsampling_packs_centroids_first(tmp_path):
    pytest.importorskip("open3d")
    room = Room()
    with RplidarEmulator(room, link=tmp_path / "lidar") as emu:
        entry = {"kind": "rplidar", "name": "l", "port": emu.port, "voxel_size_m": 0.5}
        (drv,) = parse_rig({"driver": [entry]}).build_drivers()
        angles = np.arange(0, 360, 1.0) + 0.5
        dist_mm = room.ranges(-np.deg2rad(angles)) * 1000
        pts = drv._points(angles, dist_mm)
    rows = np.any(pts != 0, axis=1)
    k = int(rows.sum())
    assert pts.shape == (360, 3) and 10 < k < 200  # 0.5 m voxels over a 6 x 4 m room outline
    assert rows[:k].all() and not rows[k:].any()  # centroids first, zeros after
    # every centroid lies within a voxel's reach of the true outline
    raw = scan_to_points(angles, dist_mm / 1000, 360)
    nearest = np.min(np.linalg.norm(pts[:k, None, :] - raw[None, :, :], axis=2), axis=1)
    assert nearest.max() < 0.5
