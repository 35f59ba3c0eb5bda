"""SharedStreamBuffer: the StreamBuffer's reads over shared memory, a writer in another
process, torn reads retried and never returned, and segments unlinked however it ends."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError, LifecycleError
from mmrobot.core.types import StreamSpec
from mmrobot.sync import SharedStreamBuffer, StreamBuffer

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="POSIX shared memory in /dev/shm")

FT = StreamSpec(
    name="ft", modality="force", shape=(6,), dtype="float32", rate_hz=100.0, policy="interp",
    max_age_ns=50_000_000, history=10,
)  # fmt: skip
# a big sample, so that a copy takes long enough for the writer to overtake it
BIG = StreamSpec(name="big", modality="other", shape=(64, 64), dtype="float64", rate_hz=1e3)


def segments() -> set[str]:
    return {p.name for p in SHM.iterdir() if p.name.startswith("mmrobot-")}


@pytest.mark.parametrize("policy", ["causal", "interp", "nearest"])
@pytest.mark.parametrize("history", [1, 4])
def test_reads_equal_a_plain_stream_buffer(policy, history):
    spec = StreamSpec(
        name="j", modality="joints", shape=(3,), dtype="float32", rate_hz=100.0,
        policy=policy, max_age_ns=30_000_000, history=history,
    )  # fmt: skip
    plain = StreamBuffer(spec, 16)
    reader = SharedStreamBuffer.create(spec, 16)
    writer = reader.handle().open_writer()
    try:
        rng = np.random.default_rng(0)
        t = 1_000_000_000
        for _ in range(40):  # wraps the ring twice
            t += int(rng.integers(5_000_000, 15_000_000))
            v = rng.normal(size=3).astype(np.float32)
            assert writer.push(t, v) == plain.push(t, v)
        for bad in ((t, np.zeros(3)), (t - 1, np.zeros(3)), (t + 1, np.full(3, np.nan))):
            assert writer.push(*bad) is plain.push(*bad) is False
        assert reader.stats == plain.stats and len(reader) == len(plain) == 16
        for q in (t - 200_000_000, t - 55_000_000, t - 1, t, t + 20_000_000):
            a, b = reader.value_at(q), plain.value_at(q)
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1:] == b[1:]
        ra, pa = reader.latest(), plain.latest()
        assert ra[0] == pa[0] and np.array_equal(ra[1], pa[1])
        for q in (t - 200_000_000, t - 55_000_000, t - 1, t, t + 20_000_000):
            a, b = reader.newest_at(q), plain.newest_at(q)
            assert (a[0] is None) == (b[0] is None) and a[1:] == b[1:]
            if a[0] is not None:
                np.testing.assert_array_equal(a[0], b[0])
        for got, want in zip(reader.window(t - 80_000_000, t), plain.window(t - 80_000_000, t)):
            np.testing.assert_array_equal(got, want)
        for got, want in zip(reader.read_since(20), plain.read_since(20)):
            np.testing.assert_array_equal(got, want)
    finally:
        writer.close()
        reader.close()


def test_a_read_overtaken_by_the_writer_runs_again_on_the_newest_samples():
    reader = SharedStreamBuffer.create(FT, 4)
    writer = reader.handle().open_writer()
    try:
        for i in range(1, 5):
            writer.push(i, np.full(6, i, np.float32))
        attempts = []

        def read():  # StreamBuffer's own read; the writer wraps the ring during the first
            attempts.append(StreamBuffer.latest(reader))
            if len(attempts) == 1:
                for i in range(5, 11):
                    writer.push(i, np.full(6, i, np.float32))
            return attempts[-1]

        t, value = reader._consistent(read)
        assert [a[0] for a in attempts] == [4, 10]  # the first result was never returned
        assert t == 10 and value.tolist() == [10.0] * 6 and reader.torn_reads == 1
        writer.clear()  # a new epoch: a read that spans it runs again too
        writer.push(1, np.ones(6, np.float32))
        assert reader.latest()[0] == 1 and len(reader) == 1
    finally:
        writer.close()
        reader.close()


def _write_fast(handle, n, done):
    writer = handle.open_writer()
    v = np.empty(handle.spec.shape, np.float64)
    for i in range(1, n + 1):
        v.fill(i)
        writer.push(i * 1000, v)
    writer.close()
    done.set()


def test_writer_in_another_process_no_torn_read_surfaces():
    """A spawned process pushes 32 kB samples as fast as it can into a 4-slot ring; every
    sample the reader gets is whole (each one is filled with its own index) and in order."""
    reader = SharedStreamBuffer.create(BIG, 4)
    ctx = mp.get_context("spawn")
    done = ctx.Event()
    proc = ctx.Process(target=_write_fast, args=(reader.handle(), 20_000, done), daemon=True)
    proc.start()
    try:
        last_t, seen, end = 0, 0, time.monotonic() + 15
        while not done.is_set() and time.monotonic() < end:
            got = reader.latest()
            if got is None:
                continue
            t, v = got
            assert v.min() == v.max() == t // 1000, "a torn sample surfaced"
            assert t >= last_t
            last_t = t
            value, _age, ok = reader.value_at(t)  # causal at t: sample t, or gone (invalid)
            assert value.min() == value.max() and (not ok or value[0, 0] == t // 1000)
            seen += 1
        proc.join(10)
        assert proc.exitcode == 0 and done.is_set()
        assert seen > 0 and reader.latest()[0] == 20_000_000
        print(f"{seen} reads, {reader.torn_reads} overtaken and run again")
        times, values, nxt, lost = reader.read_since(0)
        assert times.tolist() == [t * 1000 for t in range(19_997, 20_001)] and nxt == 20_000
        assert lost == 19_996 and (values[:, 0, 0] * 1000 == times).all()
    finally:
        proc.kill()
        reader.close()


def _attach_and_wait(handle, ready):
    writer = handle.open_writer()
    writer.push(1, np.ones(6, np.float32))
    ready.set()
    time.sleep(60)


def test_segments_are_unlinked_on_close_also_after_the_writer_was_killed():
    before = segments()
    reader = SharedStreamBuffer.create(FT, 8)
    assert segments() - before == {reader.name}
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    proc = ctx.Process(target=_attach_and_wait, args=(reader.handle(), ready), daemon=True)
    proc.start()
    assert ready.wait(30)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(10)
    assert reader.latest()[0] == 1  # what the dead writer wrote is still readable
    reader.close()
    reader.close()  # twice is fine
    assert segments() == before
    assert reader.stats.accepted == 1  # counters stay readable, frozen
    with pytest.raises(LifecycleError, match="closed"):
        reader.latest()


def test_bad_use_is_a_clear_error():
    reader = SharedStreamBuffer.create(FT, 8)
    try:
        with pytest.raises(LifecycleError, match="reading side"):
            reader.push(1, np.zeros(6))
        with pytest.raises(ConfigError, match="capacity 16"):
            SharedStreamBuffer(FT, 16, name=reader.name, writer=True)
        other = StreamSpec(name="ft", modality="force", shape=(3,), dtype="float32", rate_hz=1.0)
        with pytest.raises(ConfigError, match="not made for stream"):
            SharedStreamBuffer(other, 8, name=reader.name, writer=True)
    finally:
        reader.close()
    with pytest.raises(LifecycleError, match="does not exist"):
        reader.handle().open_writer()
