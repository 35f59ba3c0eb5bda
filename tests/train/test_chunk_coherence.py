"""Chunk targets of perturbed demonstrations: positions past an excursion are not trained on."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.train.data import coherent_positions


def test_a_perturbed_step_cuts_the_chunks_that_span_it():
    off = np.zeros(8, bool)
    off[4] = True  # step 4 executed something else than its label
    ok = coherent_positions(off, horizon=3)
    # the chunk of step t holds labels t, t+1, t+2; the state of step 5 came from the
    # perturbation at step 4, so a chunk may not go past position (4 - t) into step 5
    expected = np.ones((8, 3), bool)
    expected[3, 2] = False  # chunk 3: labels 3, 4, [5]
    expected[4, 1:] = False  # chunk 4: labels 4, [5, 6]
    np.testing.assert_array_equal(ok, expected)
    assert coherent_positions(np.zeros(5, bool), 4).all()  # plain demonstrations: all of it


def test_token_loss_and_accuracy_skip_ignored_targets():
    torch = pytest.importorskip("torch")
    from mmrobot.train.step import IGNORE_TOKEN, token_loss

    logits = torch.zeros(1, 2, 1, 4)
    logits[0, 0, 0, 1] = 5.0  # position 0 predicts token 1 confidently
    logits[0, 1, 0, 2] = 5.0  # position 1 predicts token 2
    right = torch.tensor([[[1], [2]]])
    wrong_second = torch.tensor([[[1], [3]]])
    ignored_second = torch.tensor([[[1], [IGNORE_TOKEN]]])
    loss_first_only, acc = token_loss(logits[:, :1], right[:, :1])
    loss, acc_ignored = token_loss(logits, ignored_second)
    assert torch.isclose(loss, loss_first_only) and acc_ignored == 1.0
    loss_wrong, acc_wrong = token_loss(logits, wrong_second)
    assert loss_wrong > loss and acc_wrong == 0.5


def test_the_flag_round_trips_through_a_dataset_into_the_samples(tmp_path):
    pytest.importorskip("h5py")
    from train_testlib import tiny_specs

    from mmrobot.envs.dataset import DatasetWriter, DemoDataset, EpisodeRecord
    from mmrobot.train.data import ChunkSamples

    specs = tiny_specs()
    rng = np.random.default_rng(0)
    steps = 6

    def episode(perturbed):
        return EpisodeRecord(
            task="reach", instruction="reach the red block", seed=0, success=True,
            split="train", reason="success", actions=np.zeros((steps, 7), np.float32),
            values={s.name: (rng.integers(0, 255, (steps, *s.obs_shape), dtype=np.uint8)
                             if s.dtype == "uint8"
                             else rng.normal(size=(steps, *s.obs_shape)).astype(s.dtype))
                    for s in specs},
            ages_ns={s.name: np.zeros(steps, np.int64) for s in specs},
            valid={s.name: np.ones(steps, bool) for s in specs},
            rewards=np.zeros(steps, np.float32), t_ns=np.arange(steps, dtype=np.int64),
            perturbed=perturbed,
        )  # fmt: skip

    flags = np.array([False, False, True, False, False, False])
    with DatasetWriter(tmp_path / "d.h5", specs, -np.ones(7), np.ones(7), 20.0) as w:
        w.append(episode(flags))
        w.append(episode(None))  # an unperturbed episode stores no flag
    ds = DemoDataset(tmp_path / "d.h5")
    np.testing.assert_array_equal(ds.perturbed(0), flags)
    assert not ds.perturbed(1).any()
    samples = ChunkSamples(ds, specs, horizon=3, max_len=32)
    np.testing.assert_array_equal(
        samples.chunk_coherent,
        np.concatenate([coherent_positions(flags, 3), np.ones((steps, 3), bool)]),
    )
    assert not samples.chunk_coherent.all()


def test_soft_targets_make_a_near_miss_cheaper_than_a_far_one():
    torch = pytest.importorskip("torch")
    from mmrobot.train.step import IGNORE_TOKEN, token_loss

    def confident(token, bins=9):
        logits = torch.zeros(1, 1, 1, bins)
        logits[..., token] = 6.0
        return logits

    target = torch.tensor([[[4]]])
    # one-hot: a prediction one bin off costs what one four bins off does
    near, _ = token_loss(confident(5), target)
    far, _ = token_loss(confident(8), target)
    assert torch.isclose(near, far)
    # soft targets: the near miss is cheaper, and the exact bin cheaper still
    exact, _ = token_loss(confident(4), target, label_sigma=1.0)
    near, _ = token_loss(confident(5), target, label_sigma=1.0)
    far, _ = token_loss(confident(8), target, label_sigma=1.0)
    assert exact < near < far
    # the best prediction is the Gaussian itself: its loss is the Gaussian's entropy, and a
    # uniform prediction costs log(bins) whatever the target
    k = np.arange(9)
    g = np.exp(-0.5 * ((k - 4) / 1.5) ** 2)
    g /= g.sum()
    best, _ = token_loss(torch.log(torch.tensor(g)).reshape(1, 1, 1, 9), target, label_sigma=1.5)
    assert best.item() == pytest.approx(-(g * np.log(g)).sum(), rel=1e-5)
    uniform, _ = token_loss(torch.zeros(1, 1, 1, 9), target, label_sigma=1.5)
    assert uniform.item() == pytest.approx(np.log(9), rel=1e-6)
    # ignored positions still do not count
    two = torch.cat([confident(4), confident(0)], dim=1)
    skipped, _ = token_loss(two, torch.tensor([[[4], [IGNORE_TOKEN]]]), label_sigma=1.0)
    assert torch.isclose(skipped, exact)


def test_label_sigma_is_checked():
    from mmrobot.core.errors import ConfigError
    from mmrobot.train.config import TrainConfig

    with pytest.raises(ConfigError, match="label_sigma"):
        TrainConfig(label_sigma=-1.0)
    assert TrainConfig(label_sigma=2.5).label_sigma == 2.5
