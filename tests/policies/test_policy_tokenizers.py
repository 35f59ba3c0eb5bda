import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmrobot.core.errors import ConfigError
from mmrobot.policies import ActionTokenizer, ByteTokenizer
from mmrobot.policies.config import ActionConfig

LOW = np.array([-0.02, -0.02, -0.02, -0.1, -0.1, -0.1, 0.0])
HIGH = np.array([0.02, 0.02, 0.02, 0.1, 0.1, 0.1, 1.0])


@pytest.mark.parametrize(
    "text",
    ["pick up the red cube", "", "stack the Würfel on the 碗 🤖", "x" * 10, "zyzzyva quokka"],
)
def test_byte_tokenizer_round_trip(text):
    tok = ByteTokenizer(max_len=64)
    ids, mask = tok.encode(text)
    assert ids.shape == (64,) and ids.dtype == np.int64
    n = len(text.encode("utf-8"))
    assert mask.sum() == n + 2
    assert ids[0] == tok.BOS and ids[n + 1] == tok.EOS
    assert np.all(ids[n + 2 :] == tok.PAD)
    assert ids.max() < tok.vocab_size
    assert tok.decode(ids) == text


def test_byte_tokenizer_truncates_long_text():
    tok = ByteTokenizer(max_len=8)
    ids, mask = tok.encode("abcdefghijkl")
    assert mask.all()
    assert tok.decode(ids) == "abcdef"
    assert ids[-1] == tok.EOS


def test_byte_tokenizer_batch():
    tok = ByteTokenizer(max_len=12)
    ids, mask = tok.encode_batch(["a", "bbbb"])
    assert ids.shape == (2, 12) and mask.shape == (2, 12)
    assert mask.sum(1).tolist() == [3, 6]


def test_uniform_config_edges_match_bounds():
    cfg = ActionConfig()
    tok = ActionTokenizer.from_config(cfg)
    assert tok.dim == 7 and tok.bins == 256
    np.testing.assert_allclose(tok.edges[:, 0], LOW)
    np.testing.assert_allclose(tok.edges[:, -1], HIGH)
    np.testing.assert_allclose(tok.bin_widths, ((HIGH - LOW) / 256)[:, None] * np.ones((1, 256)))


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_uniform_round_trip_within_half_bin(seed):
    rng = np.random.default_rng(seed)
    tok = ActionTokenizer.uniform(LOW, HIGH, bins=256)
    a = rng.uniform(LOW, HIGH, size=(8, 7))
    t = tok.encode(a)
    assert t.shape == (8, 7) and t.min() >= 0 and t.max() < 256
    err = np.abs(tok.decode(t) - a)
    half = (HIGH - LOW) / 256 / 2
    assert np.all(err <= half * (1 + 1e-5) + 1e-7)


def test_uniform_exact_bin_assignment():
    tok = ActionTokenizer.uniform([0.0], [1.0], bins=4)
    t = tok.encode(np.array([[0.0], [0.24], [0.25], [0.5], [0.99], [1.0]]))
    assert t[:, 0].tolist() == [0, 0, 1, 2, 3, 3]
    np.testing.assert_allclose(tok.decode(np.array([[0], [3]]))[:, 0], [0.125, 0.875])


def test_out_of_range_clips_to_end_bins():
    tok = ActionTokenizer.uniform(LOW, HIGH, bins=256)
    t = tok.encode(np.stack([LOW - 5, HIGH + 5]))
    assert t[0].tolist() == [0] * 7 and t[1].tolist() == [255] * 7


def test_quantile_bins_round_trip_and_follow_data():
    rng = np.random.default_rng(1)
    data = np.concatenate(
        [rng.normal(0, 0.003, size=(5000, 6)), rng.integers(0, 2, size=(5000, 1)).astype(float)],
        axis=1,
    )
    tok = ActionTokenizer.from_quantiles(data, LOW, HIGH, bins=64)
    assert np.all(np.diff(tok.edges, axis=1) > 0)  # strictly increasing despite a binary column
    # Bins are narrower near the data's mode than uniform bins.
    widths = tok.bin_widths[0]
    assert widths[32] < (HIGH[0] - LOW[0]) / 64 / 2
    t = tok.encode(np.clip(data, LOW, HIGH))
    err = np.abs(tok.decode(t) - np.clip(data, LOW, HIGH))
    half = np.take_along_axis(tok.bin_widths.T, t, axis=0) / 2
    assert np.all(err <= half * (1 + 1e-5) + 1e-7)


def test_quantile_edges_survive_config_round_trip():
    rng = np.random.default_rng(2)
    tok = ActionTokenizer.from_quantiles(rng.uniform(-1, 1, (100, 2)), [-1, -1], [1, 1], bins=8)
    cfg = ActionConfig(
        dim=2, bins=8, low=(-1, -1), high=(1, 1), binning="quantile", edges=tok.edges.tolist()
    )
    np.testing.assert_allclose(ActionTokenizer.from_config(cfg).edges, tok.edges)


def test_action_tokenizer_rejects_bad_input():
    tok = ActionTokenizer.uniform([0.0], [1.0], bins=4)
    with pytest.raises(ValueError, match="action dim"):
        tok.encode(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(np.array([[np.nan]]))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        tok.decode(np.array([[4]]))
    with pytest.raises(ConfigError, match="strictly increasing"):
        ActionTokenizer(np.array([[0.0, 0.5, 0.5, 1.0]]))


def test_decode_logits_reads_a_two_mode_distribution_three_ways():
    """Bins of width 0.25 over [0, 1] (centres 0.125 .. 0.875) and a distribution with 0.4 on
    the first bin and 0.6 spread over the other three: the argmax is the first bin, the median
    the second (the CDF is 0.4, 0.6, ...), the mean further up."""
    tok = ActionTokenizer.uniform([0.0], [1.0], bins=4)
    p = np.array([0.4, 0.2, 0.2, 0.2])
    logits = np.log(p)[None, None, :]  # (H=1, D=1, bins)
    assert tok.decode_logits(logits, "argmax")[0, 0] == pytest.approx(0.125)
    assert tok.decode_logits(logits, "median")[0, 0] == pytest.approx(0.375)
    assert tok.decode_logits(logits, "mean")[0, 0] == pytest.approx(
        0.4 * 0.125 + 0.2 * (0.375 + 0.625 + 0.875)
    )
    # a single sharp mode: all three agree with the argmax tokens' decode
    sharp = np.full((3, 1, 4), -30.0)
    sharp[np.arange(3), 0, [0, 2, 3]] = 0.0
    for how in ("argmax", "median", "mean"):
        np.testing.assert_allclose(
            tok.decode_logits(sharp, how), tok.decode(np.array([[0], [2], [3]])), atol=1e-6
        )
    with pytest.raises(ValueError, match="unknown action decoding 'mode'"):
        tok.decode_logits(logits, "mode")
    with pytest.raises(ValueError, match=r"\(action dim, bins\) = \(1, 4\)"):
        tok.decode_logits(np.zeros((1, 1, 5)), "median")
    with pytest.raises(ConfigError, match="action.decode"):
        ActionConfig(decode="mode")


def test_decode_logits_per_dimension():
    tok = ActionTokenizer.uniform([0.0, 0.0], [1.0, 1.0], bins=4)
    p = np.log(np.array([0.4, 0.2, 0.2, 0.2]))
    logits = np.stack([p, p])[None]  # (H=1, D=2, bins): the same distribution in both dims
    out = tok.decode_logits(logits, ["median", "argmax"])
    assert out[0].tolist() == pytest.approx([0.375, 0.125])
    with pytest.raises(ValueError, match="one decoding per action dim"):
        tok.decode_logits(logits, ["median"])
    cfg = ActionConfig(dim=2, low=(0, 0), high=(1, 1), decode=("median", "argmax"))
    assert cfg.decode == ("median", "argmax")
    with pytest.raises(ConfigError, match="one per action dimension"):
        ActionConfig(dim=2, low=(0, 0), high=(1, 1), decode=("median",))
