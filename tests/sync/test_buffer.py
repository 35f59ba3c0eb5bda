import threading

import numpy as np
import pytest

from mmrobot.core import StreamSpec
from mmrobot.sync import StreamBuffer

MS = 1_000_000


def make(policy="causal", capacity=16, shape=(3,), dtype="float32", max_age_ns=10 * MS, **kw):
    spec = StreamSpec(
        name="s",
        modality="other",
        shape=shape,
        dtype=dtype,
        rate_hz=100.0,
        policy=policy,
        max_age_ns=max_age_ns,
        **kw,
    )
    return StreamBuffer(spec, capacity=capacity)


def test_ring_wraps_keeping_the_newest_samples_in_order():
    buf = make(capacity=5)
    for i in range(12):
        assert buf.push(i * MS, np.full(3, i))
    times, values = buf.window(0, 100 * MS)
    assert times.tolist() == [7 * MS, 8 * MS, 9 * MS, 10 * MS, 11 * MS]
    assert values[:, 0].tolist() == [7, 8, 9, 10, 11]
    assert len(buf) == 5 and buf.stats.accepted == 12 and buf.stats.overwritten == 7
    # a window that straddles the physical end of the ring
    times, _ = buf.window(8 * MS, 10 * MS)
    assert times.tolist() == [8 * MS, 9 * MS, 10 * MS]


def test_rejections_are_counted_and_nothing_is_stored():
    buf = make()
    assert buf.push(10, np.zeros(3))
    assert not buf.push(10, np.ones(3))  # duplicate time
    assert not buf.push(5, np.ones(3))  # out of order
    assert not buf.push(20, np.array([0.0, np.nan, 0.0]))
    assert not buf.push(21, np.array([np.inf, 0.0, 0.0]))
    assert buf.push(22, np.ones(3))
    s = buf.stats
    assert (s.accepted, s.duplicate, s.out_of_order, s.non_finite) == (2, 1, 1, 2)
    times, values = buf.window(0, 100)
    assert times.tolist() == [10, 22] and values.tolist() == [[0, 0, 0], [1, 1, 1]]


def test_rejected_non_finite_sample_does_not_overwrite_the_oldest_when_full():
    buf = make(capacity=3)
    for i in range(3):
        buf.push(i, np.full(3, i))
    assert not buf.push(3, np.full(3, np.nan))
    times, values = buf.window(0, 10)
    assert times.tolist() == [0, 1, 2] and values[:, 0].tolist() == [0, 1, 2]


def test_wrong_shape_dtype_and_time_type_raise_clear_errors():
    buf = make()
    with pytest.raises(ValueError, match=r"shape \(4,\) != spec shape \(3,\)"):
        buf.push(1, np.zeros(4))
    ibuf = make(dtype="uint8", shape=(2, 2))
    with pytest.raises(ValueError, match="cannot be stored as uint8"):
        ibuf.push(1, np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="t_ns must be an int"):
        buf.push(1.5, np.zeros(3))
    assert buf.push(np.int64(7), [1, 2, 3])  # numpy ints and lists are fine


def test_causal_takes_latest_at_or_before_and_validity_flips_at_max_age():
    buf = make("causal", max_age_ns=10 * MS)
    buf.push(100 * MS, np.full(3, 1.0))
    buf.push(110 * MS, np.full(3, 2.0))
    v, age, ok = buf.value_at(109 * MS)
    assert v[0] == 1.0 and age == 9 * MS and ok
    v, age, ok = buf.value_at(120 * MS)  # exactly max_age: still valid
    assert v[0] == 2.0 and age == 10 * MS and ok
    v, age, ok = buf.value_at(120 * MS + 1)  # one ns past: invalid, last value kept
    assert v[0] == 2.0 and age == 10 * MS + 1 and not ok
    v, age, ok = buf.value_at(99 * MS)  # before any sample: zeros, invalid
    assert not ok and v.tolist() == [0, 0, 0]


def test_nearest_picks_closer_neighbour_on_either_side():
    buf = make("nearest", max_age_ns=3 * MS)
    buf.push(100 * MS, np.full(3, 1.0))
    buf.push(110 * MS, np.full(3, 2.0))
    assert buf.value_at(104 * MS)[0][0] == 1.0
    v, age, ok = buf.value_at(107 * MS)
    assert v[0] == 2.0 and age == -3 * MS and ok
    v, age, ok = buf.value_at(96 * MS)  # before the first sample: nearest is the first
    assert v[0] == 1.0 and age == -4 * MS and not ok


def test_interp_matches_hand_computed_values_and_holds_at_the_end():
    buf = make("interp", max_age_ns=50 * MS)
    buf.push(100 * MS, np.array([0.0, 10.0, -4.0]))
    buf.push(120 * MS, np.array([2.0, 20.0, 4.0]))
    v, age, ok = buf.value_at(105 * MS)  # a quarter of the way
    np.testing.assert_allclose(v, [0.5, 12.5, -2.0])
    assert age == 5 * MS and ok
    v, age, _ = buf.value_at(130 * MS)  # past the newest: hold, never extrapolate
    np.testing.assert_allclose(v, [2.0, 20.0, 4.0])
    assert age == 10 * MS
    v, _, _ = buf.value_at(120 * MS)
    np.testing.assert_allclose(v, [2.0, 20.0, 4.0])


def test_history_window_resamples_at_the_stream_period():
    # 100 Hz stream: period 10 ms. history 3 at t=125 ms -> values at 105, 115, 125 ms.
    buf = make("interp", max_age_ns=50 * MS, history=3)
    for i in range(10):
        buf.push(i * 10 * MS + 100 * MS, np.full(3, float(i)))
    v, age, ok = buf.value_at(125 * MS)
    assert v.shape == (3, 3)
    np.testing.assert_allclose(v[:, 0], [0.5, 1.5, 2.5])
    assert age == 5 * MS and ok
    causal = make("causal", max_age_ns=50 * MS, history=3)
    for i in range(10):
        causal.push(i * 10 * MS + 100 * MS, np.full(3, float(i)))
    v, _, _ = causal.value_at(125 * MS)
    assert v[:, 0].tolist() == [0.0, 1.0, 2.0]
    v, _, ok = causal.value_at(101 * MS)  # rows before the first sample repeat it
    assert v[:, 0].tolist() == [0.0, 0.0, 0.0] and ok


def test_read_since_returns_new_samples_and_counts_losses():
    buf = make(capacity=4)
    for i in range(3):
        buf.push(i, np.full(3, i))
    times, _, seq, lost = buf.read_since(0)
    assert times.tolist() == [0, 1, 2] and seq == 3 and lost == 0
    for i in range(3, 10):
        buf.push(i, np.full(3, i))
    times, values, seq, lost = buf.read_since(seq)
    assert times.tolist() == [6, 7, 8, 9] and seq == 10 and lost == 3
    assert values[:, 0].tolist() == [6, 7, 8, 9]


def test_concurrent_writer_and_readers_never_see_a_torn_sample():
    # Each row is self-consistent: every element equals the row's time index. A torn read
    # would mix two rows. Large rows make numpy release the GIL during the copy.
    spec = StreamSpec(
        name="img",
        modality="camera",
        shape=(64, 64, 3),
        dtype="uint8",
        rate_hz=1000.0,
        max_age_ns=10**12,
    )
    buf = StreamBuffer(spec, capacity=8)
    n = 3000
    stop = threading.Event()
    errors: list[str] = []

    def reader():
        while not stop.is_set():
            got = buf.latest()
            if got is not None:
                t, v = got
                if not (v == t % 251).all():
                    errors.append(f"latest torn at {t}")
            times, values = buf.window(0, 10**12)
            for t, v in zip(times, values):
                if not (v == t % 251).all():
                    errors.append(f"window torn at {t}")

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for th in threads:
        th.start()
    for i in range(n):
        buf.push(i, np.full((64, 64, 3), i % 251, np.uint8))
    stop.set()
    for th in threads:
        th.join()
    assert errors == []
    assert buf.stats.accepted == n


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_the_largest_finite_values_are_accepted(dtype):
    buf = make(dtype=dtype)
    big = np.finfo(dtype).max
    assert buf.push(1, np.array([big, -big, big], dtype))
    assert not buf.push(2, np.array([big, np.inf, 0], dtype))
    assert buf.stats.non_finite == 1
