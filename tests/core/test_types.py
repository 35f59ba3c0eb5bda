import numpy as np
import pytest

from mmrobot.core import (
    ActionChunk,
    ConfigError,
    DeviceNotConnectedError,
    ManualClock,
    MmrobotError,
    StreamSpec,
    seconds_to_ns,
)


def spec(**kw):
    base = dict(name="ft", modality="force", shape=(6,), dtype="float32", rate_hz=500.0)
    base.update(kw)
    return StreamSpec(**base)


def test_streamspec_normalizes_and_round_trips():
    s = spec(shape=[6], dtype=np.float32, history=10, policy="interp")
    assert s.shape == (6,) and s.dtype == "float32"
    assert s.obs_shape == (10, 6)
    assert s.period_ns == 2_000_000
    assert StreamSpec.from_dict(s.to_dict()) == s


@pytest.mark.parametrize(
    "kw, fragment",
    [
        ({"name": "wrist cam"}, "identifier"),
        ({"modality": "sonar"}, "modality 'sonar'"),
        ({"shape": (6, 0)}, "dimension <= 0"),
        ({"dtype": "str"}, "not numeric"),
        ({"rate_hz": 0}, "rate_hz"),
        ({"policy": "spline"}, "policy 'spline'"),
        ({"dtype": "uint8", "policy": "interp"}, "needs a float dtype"),
        ({"max_age_ns": 0.02}, "max_age_ns must be an int"),
        ({"history": 0}, "history"),
    ],
)
def test_streamspec_rejects_bad_fields_with_a_message(kw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        spec(**kw)


def test_streamspec_from_dict_names_unknown_and_missing_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['rate'\]"):
        StreamSpec.from_dict({**spec().to_dict(), "rate": 3})
    d = spec().to_dict()
    del d["dtype"]
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['dtype'\]"):
        StreamSpec.from_dict(d)


def test_errors_derive_from_builtins_and_root():
    assert issubclass(ConfigError, ValueError) and issubclass(ConfigError, MmrobotError)
    assert issubclass(DeviceNotConnectedError, ConnectionError)


def test_manual_clock_moves_only_forward():
    clock = ManualClock(10)
    assert clock.advance(5) == 15
    clock.set(20)
    assert clock.now_ns() == 20
    with pytest.raises(ValueError, match="backwards"):
        clock.set(19)
    assert seconds_to_ns(0.013) == 13_000_000


def test_action_chunk_checks_shapes():
    chunk = ActionChunk(t_ns=100, actions=np.zeros((8, 7), np.float32), period_ns=50)
    assert chunk.horizon == 8 and chunk.time_of(3) == 250
    with pytest.raises(ValueError, match=r"\(H, D\)"):
        ActionChunk(t_ns=0, actions=np.zeros(7), period_ns=50)
    with pytest.raises(ValueError, match="tokens shape"):
        ActionChunk(t_ns=0, actions=np.zeros((8, 7)), period_ns=50, tokens=np.zeros((8, 6), int))
