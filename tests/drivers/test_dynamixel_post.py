"""Posted goal writes (issue 14): the control tick's Sync Write does not wait for a read.

``DynamixelBus.post_sync_write`` writes at once on a free bus; on a busy one it leaves the
packet with the transaction in progress, which writes it when it ends, before any thread
queued for the bus. The emulator's control tables show what reached the wire, and in what
order.
"""

from __future__ import annotations

import struct
import threading
import time

import pytest

from mmrobot.core.errors import DeviceNotConnectedError
from mmrobot.drivers.dynamixel import DynamixelBus
from mmrobot.drivers.emulators import DynamixelEmulator
from mmrobot.drivers.protocols.dynamixel import XAddr

ARM = [(i, "XM430-W350") for i in range(1, 8)]
GOAL = XAddr.GOAL_POSITION


def _goal(tick: int) -> bytes:
    return struct.pack("<i", tick)


def _wait_until(condition, timeout_s: float = 5.0) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.001)


@pytest.fixture()
def emulator(tmp_path):
    with DynamixelEmulator(ARM, link=tmp_path / "dxl") as emu:
        yield emu


@pytest.fixture()
def bus(emulator):
    b = DynamixelBus(emulator.port, timeout_s=0.5)
    b.open()
    try:
        yield b
    finally:
        b.close()


def _post_from_another_thread(bus: DynamixelBus, data: dict[int, bytes]) -> bool:
    """Post from a thread that does not hold the bus; returns what the post returned."""
    result: list[bool] = []
    poster = threading.Thread(target=lambda: result.append(bus.post_sync_write(GOAL, 4, data)))
    poster.start()
    poster.join(timeout=5.0)
    assert not poster.is_alive(), "the post waited for the bus"
    return result[0]


def test_a_post_on_a_free_bus_is_written_at_once(emulator, bus):
    before = bus.attempts
    assert bus.post_sync_write(GOAL, 4, {1: _goal(2100), 2: _goal(2000)}) is True
    assert bus.attempts == before + 1 and bus.deferred_writes == 0
    wait_ns, write_ns = bus.last_post_ns  # the tick's send: no wait for the bus, then the write
    assert wait_ns >= 0 and write_ns > 0
    # a read behind it on the wire sees it
    assert struct.unpack("<i", bus.read(2, GOAL, 4))[0] == 2000
    assert emulator.servos[1].i32(GOAL) == 2100


def test_a_post_on_a_busy_bus_goes_out_when_the_turn_ends_before_queued_threads(emulator, bus):
    with bus.lock:  # a transaction in progress (the joint read, on a rig)
        queued = threading.Thread(target=bus.write, args=(1, GOAL, _goal(2200)))
        queued.start()
        _wait_until(lambda: bus.lock.waiting == 1)
        assert _post_from_another_thread(bus, {1: _goal(2100), 3: _goal(1900)}) is False
        assert bus.deferred_writes == 1 and bus.last_post_ns[1] == 0  # not written by the post
        time.sleep(0.05)
        assert emulator.servos[3].i32(GOAL) == 2048  # nothing on the wire while the bus is held
    queued.join(timeout=5.0)
    # the posted goal went out first, then the write that had queued for the bus
    assert emulator.servos[1].i32(GOAL) == 2200
    assert emulator.servos[3].i32(GOAL) == 1900


def test_a_newer_post_replaces_one_not_yet_written(emulator, bus):
    before = bus.attempts
    with bus.lock:
        assert _post_from_another_thread(bus, {1: _goal(2100), 2: _goal(2100)}) is False
        assert _post_from_another_thread(bus, {1: _goal(2150), 2: _goal(2150)}) is False
        assert _post_from_another_thread(bus, {4: _goal(1000)}) is False  # other ids: kept
    assert (bus.deferred_writes, bus.superseded_writes) == (3, 1)
    assert bus.attempts == before + 2
    assert struct.unpack("<i", bus.read(4, GOAL, 4))[0] == 1000  # behind both on the wire
    assert emulator.servos[1].i32(GOAL) == 2150 and emulator.servos[2].i32(GOAL) == 2150


def test_a_post_lost_to_a_port_failure_is_reported_by_the_next_post(bus, monkeypatch):
    """The thread that writes a posted packet is not the one that posted it: a write that
    fails closes the port (as any port failure does) and the next post says so."""
    with bus.lock:
        assert _post_from_another_thread(bus, {1: _goal(2100)}) is False

        def unplugged(data: bytes) -> int:
            raise OSError(5, "Input/output error")

        # the adapter went away meanwhile (every write fails; pyserial's path, not os.write)
        monkeypatch.setattr(bus, "_fd", None)
        monkeypatch.setattr(bus._ser, "write", unplugged)
    assert not bus.is_open
    with pytest.raises(DeviceNotConnectedError, match="earlier Sync Write was not written"):
        bus.post_sync_write(GOAL, 4, {1: _goal(2100)})
    # reported once; the bus then reopens for the next write, as after any port failure
    assert bus.post_sync_write(GOAL, 4, {1: _goal(2120)}) is True
    assert struct.unpack("<i", bus.read(1, GOAL, 4))[0] == 2120


def test_a_packet_the_descriptor_cannot_take_goes_through_pyserials_write(bus, monkeypatch):
    """Posted packets are written with os.write on the non-blocking descriptor when it takes
    them whole; when it does not (a full output buffer), pyserial's write (which waits,
    within its write timeout) sends what is left: the same bytes either way."""
    import os

    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:  # fill the pipe: os.write now raises BlockingIOError
            try:
                os.write(write_end, b"\0" * 4096)
            except BlockingIOError:
                break
        sent: list[bytes] = []
        monkeypatch.setattr(bus, "_fd", write_end)
        monkeypatch.setattr(bus._ser, "write", lambda data: sent.append(bytes(data)))
        assert bus.post_sync_write(GOAL, 4, {1: _goal(2100)}) is True
        assert sent == [bus._sync_write_packet(GOAL, 4, {1: _goal(2100)})]
    finally:
        os.close(read_end)
        os.close(write_end)
