import json

import numpy as np
import pytest
import torch
from policy_testlib import random_observation, tiny_batch, tiny_config

from mmrobot.core.errors import ConfigError
from mmrobot.core.types import ActionChunk
from mmrobot.policies import (
    CheckpointMismatchError,
    FusionPolicyModel,
    NormStats,
    Policy,
    TorchPolicy,
    load_checkpoint,
    save_checkpoint,
)
from mmrobot.policies.checkpoint import CONFIG_FILE, WEIGHTS_FILE


def _model(**kw):
    torch.manual_seed(0)
    cfg = tiny_config(**kw)
    cfg = cfg.replace(normalization={"ft": NormStats((0.1,) * 6, (2.0,) * 6)})
    return FusionPolicyModel(cfg).eval()


@pytest.mark.parametrize("decoding", ["parallel", "autoregressive"])
def test_save_load_round_trip(tmp_path, decoding):
    model = _model(decoding=decoding)
    batch = tiny_batch(model.config, 2)
    save_checkpoint(model, tmp_path / "ckpt", metadata={"step": 7})
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [CONFIG_FILE, WEIGHTS_FILE]
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == model.config
    assert loaded.config.normalization["ft"].std == (2.0,) * 6
    assert not loaded.training
    with torch.no_grad():
        a, la = model.generate(batch)
        b, lb = loaded.generate(batch)
    assert torch.equal(a, b)
    torch.testing.assert_close(la, lb, rtol=0, atol=0)
    doc = json.loads((tmp_path / "ckpt" / CONFIG_FILE).read_text())
    assert doc["format_version"] == 2 and doc["metadata"] == {"step": 7}


def test_normalization_stats_reach_the_network(tmp_path):
    model = _model()
    batch = tiny_batch(model.config, 1)
    save_checkpoint(model, tmp_path / "c")
    doc = json.loads((tmp_path / "c" / CONFIG_FILE).read_text())
    doc["config"]["normalization"]["ft"]["std"] = [0.5] * 6
    (tmp_path / "c" / CONFIG_FILE).write_text(json.dumps(doc))
    with torch.no_grad():
        assert (load_checkpoint(tmp_path / "c")(batch) - model(batch)).abs().max() > 1e-3


def test_config_that_does_not_match_weights_names_the_tensors(tmp_path):
    save_checkpoint(_model(), tmp_path / "c")
    path = tmp_path / "c" / CONFIG_FILE
    doc = json.loads(path.read_text())
    doc["config"]["model"]["depth"] = 3
    doc["config"]["vector"]["hidden"] = 48
    path.write_text(json.dumps(doc))
    with pytest.raises(CheckpointMismatchError) as e:
        load_checkpoint(tmp_path / "c")
    msg = str(e.value)
    assert "missing from the file" in msg and "blocks.2.qkv.weight" in msg
    assert (
        "shape mismatch" in msg
        and "vector_encoders.ft.mlp.0.weight: file (32, 24) vs config (48, 24)" in msg
    )
    assert isinstance(e.value, ConfigError)


def test_extra_tensor_in_file_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    save_checkpoint(_model(), tmp_path / "c")
    w = tmp_path / "c" / WEIGHTS_FILE
    state = load_file(str(w))
    state["rogue.weight"] = torch.zeros(2)
    save_file(state, str(w))
    with pytest.raises(
        CheckpointMismatchError, match=r"not in the network the config builds: \['rogue.weight'\]"
    ):
        load_checkpoint(tmp_path / "c")


def test_newer_missing_and_corrupt_checkpoints(tmp_path):
    save_checkpoint(_model(), tmp_path / "c")
    path = tmp_path / "c" / CONFIG_FILE
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(ConfigError, match="format_version 99 is not supported"):
        load_checkpoint(tmp_path / "c")
    # A checkpoint of the v0 design (mmrobot 0.1.0): a clear way out, not a shape traceback.
    path.write_text(json.dumps({**doc, "format_version": 1}))
    with pytest.raises(ConfigError, match=r"format v1 .* retrain it .* mmrobot 0\.1\.0"):
        load_checkpoint(tmp_path / "c")
    path.write_text(json.dumps(doc)[:50])
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_checkpoint(tmp_path / "c")
    path.write_text("[1, 2]")  # valid JSON, but not a checkpoint's object
    with pytest.raises(ConfigError, match="not an mmrobot policy checkpoint .kind 'list'"):
        load_checkpoint(tmp_path / "c")
    path.write_text(json.dumps(doc))
    w = tmp_path / "c" / WEIGHTS_FILE
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(ConfigError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "c")
    w.unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        load_checkpoint(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        load_checkpoint(tmp_path / "nothing")


def test_torch_policy_act(tmp_path):
    model = _model()
    save_checkpoint(model, tmp_path / "c")
    policy = TorchPolicy.from_checkpoint(tmp_path / "c")
    assert isinstance(policy, Policy)
    obs = random_observation(model.config.streams, np.random.default_rng(4), t_ns=5_000)
    chunk = policy.act(obs, "pick up the cube")
    assert isinstance(chunk, ActionChunk)
    ac = model.config.action
    assert chunk.actions.shape == (ac.horizon, ac.dim) and chunk.actions.dtype == np.float32
    assert chunk.t_ns == 5_000 and chunk.period_ns == ac.period_ns
    assert np.all(chunk.actions >= np.array(ac.low)) and np.all(chunk.actions <= np.array(ac.high))
    # Same decision as the batched network on the collated observation.
    with torch.no_grad():
        from mmrobot.policies import ByteTokenizer, batch_to_torch, collate

        batch = batch_to_torch(
            collate([obs], ["pick up the cube"], model.config.streams, ByteTokenizer(16))
        )
        tokens, _ = model.generate(batch)
    np.testing.assert_array_equal(chunk.tokens, tokens[0].numpy())
    policy.reset()
    np.testing.assert_array_equal(policy.act(obs, "pick up the cube").actions, chunk.actions)
