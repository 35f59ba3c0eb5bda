"""Drivers under line noise: RPLIDAR turns and points, Dynamixel resync and a fair bus lock.

Corruption comes from the emulators' own fault injector with a fixed seed; it draws the same
numbers for every byte, so the n-th byte a device sends meets the same fault however the
bytes are split into writes. ``corrupt_mode="byte"`` replaces a byte with a random other value
(a start flag can then read as set, which a single flipped bit cannot do). Assertions are on
counts (turns, rejected nodes, timeouts), never on wall-clock time.
"""

from __future__ import annotations

import contextlib
import struct
import threading
import time

import numpy as np
import pytest

from mmrobot.core.errors import DeviceTimeoutError
from mmrobot.drivers import parse_rig
from mmrobot.drivers.dynamixel import DynamixelBus
from mmrobot.drivers.dynamixel_bus import FairLock
from mmrobot.drivers.emulators import DynamixelEmulator, Room, RplidarEmulator, inject_faults
from mmrobot.drivers.lidar import RplidarScanner, spike_mask
from mmrobot.drivers.protocols.dynamixel import STATE_ADDR, STATE_LEN, Inst, XAddr, build_packet

SPR = 360  # nodes per turn
ARM = [(i, "XM430-W350") for i in range(1, 8)]


# ----------------------------------------------------------------------------- RPLIDAR


def _feed_in_reads(scanner: RplidarScanner, wire: bytes, seed: int) -> list:
    """Feed ``wire`` in reads of random sizes, as from a serial port; the turns completed."""
    rng = np.random.default_rng(seed)
    turns, pos = [], 0
    while pos < len(wire):
        n = int(rng.integers(1, 600))
        turns += scanner.feed(wire[pos : pos + n])[1]
        pos += n
    return turns


def test_a_start_flag_without_a_wrap_does_not_split_a_turn():
    wire = bytearray(RplidarEmulator().nodes_for(0, 3 * SPR + 5))
    k = SPR + 200  # a node in the middle of the second turn
    wire[5 * k] = (wire[5 * k] & 0xFC) | 0b01  # S = 1, !S = 0: passes the check bits
    sc = RplidarScanner()
    turns = _feed_in_reads(sc, bytes(wire), seed=0)
    # the partial turn before the first wrap is dropped; the flagged turn stays whole
    assert [len(a) for a, _, _ in turns] == [SPR, SPR]
    st = sc.stats
    assert st.false_starts == 1 and st.turns == 2 and st.rejected == 0


def test_a_node_failing_its_check_bits_is_rejected_and_counted():
    wire = bytearray(RplidarEmulator().nodes_for(0, 2 * SPR + 5))
    wire[5 * (SPR + 10) + 1] &= 0xFE  # C = 0 (LR001: the check bit is always 1)
    wire[5 * (SPR + 100)] |= 0b11  # S = !S = 1
    sc = RplidarScanner()
    turns = _feed_in_reads(sc, bytes(wire), seed=1)
    st = sc.stats
    assert st.check_bit_errors == 2 and st.step_errors == 0
    assert len(turns) == 1 and len(turns[0][0]) == SPR - 4  # each bad node and its suspect


def test_a_corrupted_distance_is_rejected_as_a_spike():
    emu = RplidarEmulator()
    wire = bytearray(emu.nodes_for(0, 2 * SPR + 5))
    wire[5 * (SPR + 50) + 4] ^= 0x10  # high distance byte: +-1.024 m, no check can see it
    (clean,) = _feed_in_reads(RplidarScanner(), emu.nodes_for(0, 2 * SPR + 5), seed=2)
    sc = RplidarScanner(max_jump_mm=300.0)
    (turn,) = _feed_in_reads(sc, bytes(wire), seed=2)
    assert sc.stats.spikes == 1 and len(turn[0]) == SPR - 1
    assert set(clean[0]) - set(turn[0]) == {clean[0][50]}  # exactly that node is gone
    loose = RplidarScanner(max_jump_mm=None)  # the filter off: the wrong point goes through
    (turn,) = _feed_in_reads(loose, bytes(wire), seed=2)
    assert loose.stats.spikes == 0 and len(turn[0]) == SPR


def _nearest(sorted_a: np.ndarray, a: np.ndarray) -> np.ndarray:
    j = np.clip(np.searchsorted(sorted_a, a), 1, len(sorted_a) - 1)
    return np.where(np.abs(sorted_a[j - 1] - a) <= np.abs(sorted_a[j] - a), j - 1, j)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rplidar_at_0_1_percent_byte_corruption(seed):
    """Every turn comes out whole and once; no wrong point is accepted; rejections counted."""
    emu = RplidarEmulator(Room(), corrupt_rate=0.001, corrupt_mode="byte", seed=seed)
    n_turns = 30
    wire = emu.nodes_for(0, n_turns * SPR + 5)
    noisy = inject_faults(emu, wire)
    assert emu.bytes_corrupted >= 30
    clean = _feed_in_reads(RplidarScanner(), wire, seed)  # what the device measured
    sc = RplidarScanner(max_jump_mm=300.0)
    turns = _feed_in_reads(sc, noisy, seed)
    st = sc.stats
    assert len(turns) == st.turns == len(clean) == n_turns - 1  # one scan per turn, none split
    assert st.false_starts >= 1  # a start flag did read as set; it split nothing
    assert st.check_bit_errors > 0 and st.spikes > 0
    for (angles, dists, _), (ref_a, ref_d, _) in zip(turns, clean, strict=True):
        assert SPR - 20 <= len(angles) <= SPR
        assert angles.max() - angles.min() > 355.0  # one whole turn
        assert not spike_mask(dists, 300.0).any()  # no point jumps against both neighbours
        # every point within the spike bound of what the device measured there: no point
        # metres off (the filter off, some are: see the test above)
        assert np.abs(dists - ref_d[_nearest(ref_a, angles)]).max() < 300.0


def _check_against_room(points: np.ndarray, room: Room, tol_m: float) -> None:
    rows = points[np.any(points != 0, axis=1)]
    ang, r = np.arctan2(rows[:, 1], rows[:, 0]), np.hypot(rows[:, 0], rows[:, 1])
    # the device measures at the exact angle and sends it rounded to 1/64 degree: at a box
    # edge the truth must be taken within half a quantum either way
    half = np.deg2rad(1 / 128)
    err = np.min([np.abs(r - room.ranges(ang + k * half)) for k in (-1, 0, 1)], axis=0)
    assert err.max() < tol_m, err.max()


def test_rplidar_driver_on_a_noisy_line(tmp_path):
    room = Room()
    with RplidarEmulator(
        room, link=tmp_path / "lidar", corrupt_rate=0.001, corrupt_mode="byte", seed=11
    ) as emu:
        entry = {"kind": "rplidar", "name": "l", "port": emu.port, "response_timeout_s": 5.0}
        (drv,) = parse_rig({"driver": [entry]}).build_drivers()
        with drv:
            assert drv.wait_for_samples(12, timeout_s=30)
            _, clouds = drv.buffers["lidar"].window(0, 2**62)
            stats, nodes = drv.stats, drv.node_stats
        sent_turns = emu.nodes_sent // SPR
    assert drv.scans <= sent_turns  # never more scans than turns
    assert nodes.turns == drv.scans
    assert stats.checksum_errors == nodes.rejected > 0 and stats.errors == 0
    for cloud in clouds:
        _check_against_room(cloud, room, tol_m=0.3)


# ----------------------------------------------------------------------------- Dynamixel


class _GarblingEmulator(DynamixelEmulator):
    """Garbles one status packet of each id in ``garble`` (once), and logs Sync Read ids."""

    def __init__(self, *args: object, where: str, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.where = where
        self.garble: set[int] = set()
        self.sync_reads: list[list[int]] = []

    def _handle(self, dxl_id: int, inst: int, p: bytes) -> None:
        if inst == Inst.SYNC_READ:
            self.sync_reads.append(list(p[4:]))
        super()._handle(dxl_id, inst, p)

    def _status(self, servo, error: int, data: bytes = b"") -> None:
        if servo.id not in self.garble:
            return super()._status(servo, error, data)
        self.garble.discard(servo.id)
        pkt = bytearray(build_packet(servo.id, Inst.STATUS, bytes((error,)) + data))
        if self.where == "header":
            pkt[2] ^= 0x10  # FF FF ED 00: not a header; the decoder skips it
        elif self.where == "length":
            pkt[5] += 40  # claims 40 more bytes than come: the packet never completes
        else:
            pkt[-1] ^= 0x01  # CRC
        self.send(bytes(pkt))


@pytest.mark.parametrize(("where", "bad_id"), [("header", 3), ("length", 5), ("crc", 3)])
def test_a_corrupted_reply_is_asked_again_at_once(tmp_path, where, bad_id):
    with _GarblingEmulator(ARM[:5], link=tmp_path / "dxl", where=where) as emu:
        bus = DynamixelBus(emu.port, timeout_s=2.0, retries=0)
        try:
            emu.garble = {bad_id}
            got = bus.sync_read([1, 2, 3, 4, 5], XAddr.PRESENT_POSITION, 4)
        finally:
            bus.close()
    assert {i: struct.unpack("<i", d)[0] for i, d in got.items()} == dict.fromkeys(
        range(1, 6), 2048
    )
    # the old bus waited the full 2 s here and, with retries=0, failed
    assert bus.timeouts == 0 and bus.corrupt_replies == 1 and bus.attempts == 2
    assert emu.sync_reads[0] == [1, 2, 3, 4, 5] and bad_id in emu.sync_reads[1]


def test_a_reply_failing_its_crc_is_asked_again_without_waiting_for_quiet(tmp_path):
    """Every reply in and the missing one failed its CRC: nothing is still coming, so the bus
    does not wait ``quiet_s``. With a quiet time longer than the timeout, waiting for it would
    end the attempt as a timeout instead."""
    with _GarblingEmulator(ARM[:5], link=tmp_path / "dxl", where="crc") as emu:
        bus = DynamixelBus(emu.port, timeout_s=1.0, retries=0)
        bus.quiet_s = 10.0
        try:
            emu.garble = {2}
            got = bus.sync_read([1, 2, 3, 4, 5], XAddr.PRESENT_POSITION, 4)
        finally:
            bus.close()
    assert sorted(got) == [1, 2, 3, 4, 5]
    assert bus.timeouts == 0 and bus.corrupt_replies == 1 and bus.attempts == 2


def test_sync_reads_at_0_1_percent_corruption_never_wait_the_timeout(tmp_path):
    with DynamixelEmulator(
        ARM, link=tmp_path / "dxl", corrupt_rate=0.001, corrupt_mode="byte", seed=5
    ) as emu:
        bus = DynamixelBus(emu.port, timeout_s=1.0, retries=0)
        ids = list(range(1, 8))
        try:
            for _ in range(300):
                data = bus.sync_read(ids, STATE_ADDR, STATE_LEN)
                assert {struct.unpack_from("<i", data[i], 12)[0] for i in ids} == {2048}
        finally:
            bus.close()
        corrupted = emu.bytes_corrupted
    assert corrupted >= 20
    assert bus.timeouts == 0 and bus.corrupt_replies > 0
    assert bus.attempts == 300 + bus.corrupt_replies  # each fault cost one immediate retry


def test_fair_lock_serves_waiters_in_order_and_is_reentrant():
    lock = FairLock()
    order: list[str] = []

    def writer() -> None:
        with lock:
            order.append("writer")

    with lock, lock:  # reentrant
        t = threading.Thread(target=writer)
        t.start()
        while lock.waiting == 0:
            time.sleep(0.001)
    with lock:  # released and asked for again at once: the writer, queued first, goes first
        order.append("reader")
    t.join()
    assert order == ["writer", "reader"]
    with pytest.raises(RuntimeError):
        lock.release()


def test_a_goal_write_waits_at_most_one_transaction(tmp_path):
    """A read that keeps timing out (a silent servo) does not hold the bus through its retries."""
    with DynamixelEmulator(ARM, link=tmp_path / "dxl", silent_ids={4}) as emu:
        bus = DynamixelBus(emu.port, timeout_s=0.1, retries=4)

        def poll() -> None:
            with contextlib.suppress(DeviceTimeoutError):
                bus.sync_read([1, 2, 3, 4], XAddr.PRESENT_POSITION, 4)

        reader = threading.Thread(target=poll)
        try:
            reader.start()
            while bus.attempts == 0:
                time.sleep(0.001)
            before = bus.attempts
            bus.sync_write(XAddr.GOAL_POSITION, 4, {1: struct.pack("<i", 2100)})
            during = bus.attempts - before
            reader.join()
        finally:
            bus.close()
        goal = emu.servos[1].i32(XAddr.GOAL_POSITION)
    # the read attempt in progress (or, at worst, the one that began as the write queued)
    # and the write itself; an unfair lock lets the read's 4 retries go first
    assert during <= 2
    assert goal == 2100 and bus.timeouts == 5
