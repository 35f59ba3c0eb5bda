"""History windows (``spec.history > 1``) against a reference over every held sample.

``StreamBuffer`` resamples a history from a window of the ring around the queries (the
joint and force histories, read every control tick); issue 14 trimmed that code's numpy
overhead. The reference here resamples from all held samples with each policy's rule, on
irregular sample times, a wrapped ring and query times before, among and after the samples.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from mmrobot.core import StreamSpec
from mmrobot.sync import StreamBuffer

MS = 1_000_000


def reference(buf: StreamBuffer, t_ns: int) -> tuple[np.ndarray, int, bool]:
    spec = buf.spec
    times, values = buf.window(-(2**62), 2**62)
    if len(times) == 0:
        return spec.zeros(), 0, False
    query = t_ns - spec.period_ns * np.arange(spec.history - 1, -1, -1, dtype=np.int64)
    before = np.array([np.count_nonzero(times <= q) - 1 for q in query])
    if before[-1] < 0:
        return spec.zeros(), 0, False
    last = len(times) - 1
    idx = np.clip(before, 0, last)
    nxt = np.minimum(idx + 1, last)
    if spec.policy == "interp":
        span = (times[nxt] - times[idx]).astype(np.float64)
        w = np.where(span > 0, (query - times[idx]) / np.where(span > 0, span, 1.0), 0.0)
        w = np.clip(w, 0.0, 1.0).reshape(-1, *([1] * len(spec.shape)))
        out = (values[idx] + (values[nxt] - values[idx]) * w).astype(spec.dtype)
    elif spec.policy == "nearest":
        take = (before < 0) | (np.abs(times[nxt] - query) < np.abs(query - times[idx]))
        idx = np.where(take, nxt, idx)
        out = values[idx]
    else:
        out = values[idx]
    age = int(t_ns - times[idx[-1]])
    return out, age, abs(age) <= spec.max_age_ns


@pytest.mark.parametrize("policy", ["interp", "causal", "nearest"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_history_matches_the_reference(policy, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{policy} {dtype}".encode()))
    spec = StreamSpec(
        name="s",
        modality="joints",
        shape=(7,),
        dtype=dtype,
        rate_hz=200.0,
        policy=policy,
        max_age_ns=20 * MS,
        history=10,
    )
    buf = StreamBuffer(spec, capacity=64)
    t = 0
    checked = 0
    for _ in range(400):  # six times around the ring
        t += int(rng.integers(1, 12 * MS))
        buf.push(t, rng.normal(size=7))
        for q in (t, t - int(rng.integers(0, 80 * MS)), t + int(rng.integers(0, 30 * MS))):
            got, want = buf.value_at(q), reference(buf, q)
            np.testing.assert_array_equal(got[0], want[0])
            assert got[0].dtype == want[0].dtype and got[1:] == want[1:]
            checked += 1
    assert checked == 1200
    # before every held sample: zeros, invalid
    assert buf.value_at(0)[2] is False


@pytest.mark.parametrize("policy", ["interp", "causal"])
def test_newest_at_is_the_last_row_of_the_history_and_its_age(policy):
    """A control tick's cheap read: the newest sample at or before t, with value_at's age and
    validity; nothing before the first held sample."""
    spec = StreamSpec(
        name="j", modality="joints", shape=(2,), dtype="float32", rate_hz=100.0,
        policy=policy, max_age_ns=25 * MS, history=5,
    )  # fmt: skip
    buf = StreamBuffer(spec, 8)
    assert buf.newest_at(0) == (None, 0, False)
    rng = np.random.default_rng(1)
    t = 1_000 * MS
    times = []
    for _ in range(20):  # wraps the ring
        t += int(rng.integers(4 * MS, 16 * MS))
        buf.push(t, rng.normal(size=2).astype(np.float32))
        times.append(t)
    held = times[-8:]
    for q in [held[0] - 1, *held, held[3] + 2 * MS, t + 1, t + 40 * MS]:
        value, age, valid = buf.newest_at(q)
        if q < held[0]:
            assert (value, age, valid) == (None, 0, False)
            continue
        window, full_age, full_valid = buf.value_at(q)
        newest = max(x for x in held if x <= q)
        assert age == q - newest == full_age and valid == full_valid == (age <= 25 * MS)
        np.testing.assert_array_equal(value, buf.window(newest, newest)[1][0])
        if q >= t:  # past the newest sample the history's last row holds it
            np.testing.assert_array_equal(value, window[-1])
        assert buf.newest_at(q, copy=False)[0] is None
