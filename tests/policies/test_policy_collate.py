import numpy as np
import pytest
from policy_testlib import TINY_STREAMS, random_observation

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import Observation
from mmrobot.policies import ByteTokenizer, collate, input_names


def test_collate_shapes_dtypes_and_names(rng):
    obs = [random_observation(TINY_STREAMS, rng) for _ in range(3)]
    batch = collate(obs, ["a", "bb", "ccc"], TINY_STREAMS, ByteTokenizer(16))
    assert list(batch) == input_names(TINY_STREAMS)
    assert batch["instruction_tokens"].shape == (3, 16)
    assert batch["instruction_mask"].sum(1).tolist() == [3, 4, 5]
    assert batch["cam_a"].shape == (3, 32, 32, 3) and batch["cam_a"].dtype == np.uint8
    assert batch["ft"].shape == (3, 4, 6) and batch["ft"].dtype == np.float32
    assert batch["lidar__valid"].dtype == bool and batch["lidar__valid"].all()
    assert batch["joints__age_ns"].dtype == np.int64
    assert batch["joints__age_ns"].tolist() == [o.ages_ns["joints"] for o in obs]
    np.testing.assert_array_equal(batch["cam_b"][1], obs[1].values["cam_b"])


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_invalid_and_absent_streams_become_zero_and_invalid(rng):
    o = random_observation(TINY_STREAMS, rng)
    values = dict(o.values)
    del values["lidar"]
    o2 = Observation(o.t_ns, values, dict(o.ages_ns), {**o.valid, "ft": False})
    batch = collate([o, o2], ["x", "y"], TINY_STREAMS, ByteTokenizer(16))
    assert batch["ft__valid"].tolist() == [True, False]
    assert batch["lidar__valid"].tolist() == [True, False]
    assert not batch["ft"][1].any() and not batch["lidar"][1].any()
    assert batch["ft__age_ns"][1] == 0


def test_required_stream_missing_is_an_error(rng):
    specs = tuple(
        s if s.name != "ft" else type(s)(**{**s.to_dict(), "shape": (6,), "optional": False})
        for s in TINY_STREAMS
    )
    o = random_observation(specs, rng)
    values = {k: v for k, v in o.values.items() if k != "ft"}
    with pytest.raises(ConfigError, match="no stream 'ft'"):
        collate([Observation(o.t_ns, values, o.ages_ns, o.valid)], ["x"], specs, ByteTokenizer(16))


def test_wrong_shape_is_an_error_naming_the_stream(rng):
    o = random_observation(TINY_STREAMS, rng)
    values = {**o.values, "joints": np.zeros(7, np.float32)}
    with pytest.raises(ValueError, match=r"'joints'.*\(7,\).*\(4, 7\)"):
        collate(
            [Observation(o.t_ns, values, o.ages_ns, o.valid)],
            ["x"],
            TINY_STREAMS,
            ByteTokenizer(16),
        )


def test_length_mismatch_is_an_error(rng):
    with pytest.raises(ValueError, match="2 observations but 1 instructions"):
        collate([random_observation(TINY_STREAMS, rng)] * 2, ["x"], TINY_STREAMS, ByteTokenizer(16))
