import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmrobot.core import StreamSpec
from mmrobot.sync import StreamBuffer, Synchronizer, match_sets

MS = 1_000_000


def buffer(name, policy="causal", rate_hz=100.0, max_age_ns=20 * MS, shape=(2,), capacity=256):
    spec = StreamSpec(
        name=name,
        modality="other",
        shape=shape,
        dtype="float32",
        rate_hz=rate_hz,
        policy=policy,
        max_age_ns=max_age_ns,
    )
    return StreamBuffer(spec, capacity=capacity)


def test_observe_reports_values_ages_and_masks_per_stream():
    fast, slow, empty = buffer("fast", "interp"), buffer("slow"), buffer("empty")
    for i in range(11):
        fast.push(i * 10 * MS, np.array([i, -i], np.float32))
    slow.push(0, np.array([7, 7], np.float32))
    sync = Synchronizer([fast, slow, empty])
    obs = sync.observe(55 * MS)
    np.testing.assert_allclose(obs.values["fast"], [5.5, -5.5])
    assert obs.ages_ns == {"fast": 5 * MS, "slow": 55 * MS, "empty": 0}
    assert obs.valid == {"fast": True, "slow": False, "empty": False}
    assert obs.values["slow"].tolist() == [7, 7]  # stale streams keep their last value
    assert obs.values["empty"].tolist() == [0, 0]
    assert not obs.all_valid() and obs.all_valid(("fast",))


def test_observe_returns_copies():
    b = buffer("a")
    b.push(0, np.array([1, 2], np.float32))
    obs = Synchronizer([b]).observe(0)
    obs.values["a"][:] = 99
    assert b.latest()[1].tolist() == [1, 2]


def test_duplicate_names_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        Synchronizer([buffer("a"), buffer("a")])


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 10**9), min_size=2, max_size=30, unique=True),
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=30, max_size=30),
    query=st.integers(-(10**9), 2 * 10**9),
)
def test_interp_stays_between_neighbours_and_observe_never_raises(times, values, query):
    times = sorted(times)
    b = buffer("x", "interp", max_age_ns=10**9, shape=(1,), capacity=64)
    for t, v in zip(times, values):
        b.push(t, np.array([v], np.float32))
    obs = Synchronizer([b]).observe(query)
    value = float(obs.values["x"][0])
    i = int(np.searchsorted(times, query, side="right")) - 1
    if i < 0:
        assert not obs.valid["x"] and value == 0.0
        return
    j = min(i + 1, len(times) - 1)
    lo, hi = sorted((values[i], values[j]))
    tol = 1e-6 * max(1.0, abs(lo), abs(hi))
    assert lo - tol <= value <= hi + tol
    assert obs.ages_ns["x"] == query - times[i]


def test_match_sets_pairs_within_slop_and_uses_each_sample_once():
    a, b = buffer("a"), buffer("b")
    for t in [0, 10, 20, 30, 40]:
        a.push(t * MS, np.array([t, 0], np.float32))
    for t in [1, 12, 26, 41, 60]:  # 26 is 6 ms from 20 and 4 ms from 30
        b.push(t * MS, np.array([t, 0], np.float32))
    sets = list(match_sets([a, b], slop_ns=3 * MS))
    pairs = [(s.times_ns["a"] // MS, s.times_ns["b"] // MS) for s in sets]
    assert pairs == [(0, 1), (10, 12), (40, 41)]
    assert all(s.spread_ns <= 3 * MS for s in sets)
    assert sets[1].values["b"][0] == 12
    sets = list(match_sets([a, b], slop_ns=5 * MS))
    assert [(s.times_ns["a"] // MS, s.times_ns["b"] // MS) for s in sets] == [
        (0, 1),
        (10, 12),
        (30, 26),
        (40, 41),
    ]


def test_observe_latest_gives_the_named_values_and_every_age():
    ms = 1_000_000
    joints = StreamSpec("joints", "joints", (2,), "float32", 100.0, "interp", 30 * ms, history=4)
    cam = StreamSpec("cam", "camera", (2, 2, 3), "uint8", 20.0, "causal", 60 * ms)
    empty = StreamSpec("ft", "force", (6,), "float32", 100.0, "interp", 30 * ms)
    bufs = [StreamBuffer(joints, 16), StreamBuffer(cam, 8), StreamBuffer(empty, 8)]
    for k in range(10):
        bufs[0].push(k * 10 * ms, np.full(2, k, np.float32))
    bufs[1].push(5 * ms, np.ones((2, 2, 3), np.uint8))
    sync = Synchronizer(bufs)
    t = 96 * ms
    light, full = sync.observe_latest(t, {"joints", "ft"}), sync.observe(t)
    assert set(light.values) == {"joints", "ft"}
    np.testing.assert_array_equal(light.values["joints"], [9, 9])  # one sample, no window
    np.testing.assert_array_equal(light.values["ft"], np.zeros(6))  # nothing pushed yet
    assert light.ages_ns == full.ages_ns == {"joints": 6 * ms, "cam": 91 * ms, "ft": 0}
    assert light.valid == full.valid == {"joints": True, "cam": False, "ft": False}
