"""ONNX export and the ONNX Runtime policy: graph checks, parity with torch, errors, no torch."""

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from mmrobot.cli import main
from mmrobot.core.errors import ConfigError
from mmrobot.core.types import ActionChunk
from mmrobot.deploy import OnnxPolicy, OrtConfig, Sidecar, export_onnx
from mmrobot.deploy.sidecar import MODEL_FILE, SIDECAR_FILE
from mmrobot.policies import (
    ByteTokenizer,
    FusionPolicyModel,
    NormStats,
    batch_to_torch,
    collate,
    input_names,
    save_checkpoint,
)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "policies"))
from policy_testlib import random_observation, tiny_config  # noqa: E402


def _checkpoint(
    directory: Path, decoding: str = "parallel", fusion: str = "mid", camera: dict | None = None
) -> FusionPolicyModel:
    torch.manual_seed(0)
    cfg = tiny_config(fusion, decoding, camera).replace(
        normalization={"joints": NormStats((0.2,) * 7, (1.5,) * 7)}
    )
    model = FusionPolicyModel(cfg).eval()
    save_checkpoint(model, directory, metadata={"note": "test"})
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{precision: (model, export dir)} for a parallel-decoding tiny policy."""
    root = tmp_path_factory.mktemp("onnx")
    model = _checkpoint(root / "ckpt")
    out = {}
    for q in (None, "int8", "fp16"):
        d = root / f"export_{q or 'fp32'}"
        export_onnx(root / "ckpt", d, quantize=q)
        out[q or "fp32"] = d
    return model, out


def _batch(model, n: int, seed: int = 1, mask: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = [random_observation(model.config.streams, rng) for _ in range(n)]
    b = collate(obs, [f"pick {i}" for i in range(n)], model.config.streams, ByteTokenizer(16))
    if mask:  # masked modalities, and negative ages (a "nearest" sample after t)
        b["cam_a__valid"][:3] = False
        b["lidar__valid"][2:5] = False
        b["ft__valid"][6:7] = False
        b["lidar"][7:8] = 0.0
        b["joints__age_ns"][:4] = -rng.integers(0, 5_000_000, min(n, 4))
    return b


def _torch(model, batch):
    with torch.no_grad():
        tokens, logits = model.generate(batch_to_torch(batch))
    return logits.numpy(), tokens.numpy()


def test_export_files_graph_and_sidecar(exported):
    model, dirs = exported
    d = dirs["fp32"]
    assert sorted(p.name for p in d.iterdir()) == [SIDECAR_FILE, MODEL_FILE]
    proto = onnx.load(str(d / MODEL_FILE))
    onnx.checker.check_model(proto, full_check=True)
    names = [i.name for i in proto.graph.input]
    assert names == input_names(model.config.streams)
    assert [o.name for o in proto.graph.output] == ["action_logits", "action_tokens"]
    for i in proto.graph.input:  # dynamic batch, static everything else
        dims = i.type.tensor_type.shape.dim
        assert dims[0].dim_param and not dims[0].dim_value
        assert all(x.dim_value > 0 for x in dims[1:])
    doc = json.loads((d / SIDECAR_FILE).read_text())
    assert doc["format_version"] == 1 and doc["precision"] == "fp32"
    assert [s["name"] for s in doc["observation_spec"]] == [s.name for s in model.config.streams]
    assert doc["tokenizer"] == {"kind": "byte", "max_len": 16}
    assert doc["action"]["horizon"] == 2 and doc["action"]["bins"] == 16
    assert doc["config"]["normalization"]["joints"]["std"] == [1.5] * 7
    assert len(doc["config"]["action"]["edges"]) == 3
    assert doc["metadata"]["checkpoint_metadata"] == {"note": "test"}


@pytest.mark.parametrize("batch_size", [1, 8])
def test_fp32_parity_with_torch(exported, batch_size):
    model, dirs = exported
    policy = OnnxPolicy(dirs["fp32"], OrtConfig(intra_op_threads=1))
    b = _batch(model, batch_size)
    logits, tokens = policy.run(b)
    t_logits, t_tokens = _torch(model, b)
    assert logits.shape == t_logits.shape and tokens.shape == t_tokens.shape
    assert np.abs(logits - t_logits).max() <= 1e-4
    assert (tokens == t_tokens).mean() >= 0.999


def test_parity_on_many_samples_with_random_masks(exported):
    model, dirs = exported
    policy = OnnxPolicy(dirs["fp32"])
    rng = np.random.default_rng(9)
    b = _batch(model, 64, seed=9, mask=False)
    for s in model.config.streams:
        b[f"{s.name}__valid"] = rng.random(64) < 0.7
    logits, tokens = policy.run(b)
    t_logits, t_tokens = _torch(model, b)
    assert np.abs(logits - t_logits).max() <= 1e-4
    assert (tokens == t_tokens).mean() >= 0.999


@pytest.mark.parametrize(("precision", "tol", "agree"), [("int8", 0.2, 0.9), ("fp16", 0.02, 0.97)])
def test_reduced_precision_stays_close(exported, precision, tol, agree):
    model, dirs = exported
    side = Sidecar.read(dirs[precision])
    assert side.precision == precision
    assert side.model_bytes < Sidecar.read(dirs["fp32"]).model_bytes
    logits, tokens = OnnxPolicy(dirs[precision]).run(_batch(model, 8))
    t_logits, t_tokens = _torch(model, _batch(model, 8))
    assert logits.dtype == np.float32
    assert np.abs(logits - t_logits).max() <= tol
    assert (tokens == t_tokens).mean() >= agree


def test_int8_graph_has_integer_matmuls(exported):
    _, dirs = exported
    ops = {n.op_type for n in onnx.load(str(dirs["int8"] / MODEL_FILE)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops


def test_int8_weights_fit_seven_bits(exported):
    """7-bit weights keep u8s8 products from saturating on CPUs without VNNI, on any CPU's CI."""
    _, dirs = exported
    proto = onnx.load(str(dirs["int8"] / MODEL_FILE))
    weights = [
        onnx.numpy_helper.to_array(t)
        for t in proto.graph.initializer
        if t.data_type == onnx.TensorProto.INT8
    ]
    assert weights
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64


def test_act_matches_torch_policy(exported):
    from mmrobot.policies import TorchPolicy

    model, dirs = exported
    obs = random_observation(model.config.streams, np.random.default_rng(3), t_ns=42)
    chunk = OnnxPolicy(dirs["fp32"]).act(obs, "open the gripper")
    ref = TorchPolicy(model).act(obs, "open the gripper")
    assert isinstance(chunk, ActionChunk)
    assert chunk.t_ns == 42 and chunk.period_ns == model.config.action.period_ns
    np.testing.assert_array_equal(chunk.tokens, ref.tokens)
    np.testing.assert_array_equal(chunk.actions, ref.actions)
    assert abs(chunk.info["mean_token_prob"] - ref.info["mean_token_prob"]) < 1e-4


def test_autoregressive_late_and_early_fusion_export(tmp_path):
    for fusion, decoding in (
        ("mid", "autoregressive"),
        ("late", "parallel"),
        ("early", "parallel"),
    ):
        model = _checkpoint(tmp_path / f"c_{fusion}", decoding=decoding, fusion=fusion)
        export_onnx(tmp_path / f"c_{fusion}", tmp_path / f"e_{fusion}")
        b = _batch(model, 8)
        logits, tokens = OnnxPolicy(tmp_path / f"e_{fusion}").run(b)
        t_logits, t_tokens = _torch(model, b)
        assert np.abs(logits - t_logits).max() <= 1e-4
        assert (tokens == t_tokens).mean() >= 0.999


@pytest.mark.parametrize("start", [0, 1])
def test_pixel_film_exports(tmp_path, start):
    camera = {"film": True, "pixel_film": True, "pixel_film_from": start, "stem_channels": [8, 8]}
    model = _checkpoint(tmp_path / "c", camera=camera)
    with torch.no_grad():  # the per-pixel layers start as the identity: give them weights
        for layer in model.image_encoder.pixel_film:
            torch.nn.init.normal_(layer.value.weight, std=0.5)
    save_checkpoint(model, tmp_path / "c", metadata={"note": "test"})
    export_onnx(tmp_path / "c", tmp_path / "e")
    b = _batch(model, 8)
    logits, tokens = OnnxPolicy(tmp_path / "e").run(b)
    t_logits, t_tokens = _torch(model, b)
    assert np.abs(logits - t_logits).max() <= 1e-4
    assert (tokens == t_tokens).mean() >= 0.999


def test_provider_fallback_and_unknown_provider(exported):
    _, dirs = exported
    p = OnnxPolicy(
        dirs["fp32"], OrtConfig(providers=("CUDAExecutionProvider", "CPUExecutionProvider"))
    )
    assert p.providers[-1] == "CPUExecutionProvider"
    if "CUDAExecutionProvider" not in p.providers:
        assert "CUDAExecutionProvider" in p.provider_errors
    with pytest.raises(ConfigError, match="not onnxruntime providers"):
        OnnxPolicy(dirs["fp32"], OrtConfig(providers=("WarpDriveExecutionProvider",)))
    quiet = OnnxPolicy(dirs["fp32"], OrtConfig.from_dict({"allow_spinning": False}))
    assert quiet.run(_batch(exported[0], 2))[1].shape == (2, 2, 3)
    with pytest.raises(ConfigError, match="allow_spinning must be true or false"):
        OrtConfig(allow_spinning="no")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['threads'\]"):
        OrtConfig.from_dict({"threads": 2})


def test_missing_truncated_and_newer_files(exported, tmp_path):
    _, dirs = exported
    d = tmp_path / "copy"
    shutil.copytree(dirs["fp32"], d)
    model_file = d / MODEL_FILE
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="truncated"):
        OnnxPolicy(d)
    model_file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(ConfigError, match="SHA-256"):
        OnnxPolicy(d)
    model_file.unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        OnnxPolicy(d)
    model_file.write_bytes(data)
    OnnxPolicy(d)  # restored: loads again
    side = d / SIDECAR_FILE
    doc = json.loads(side.read_text())
    side.write_text(json.dumps({**doc, "format_version": 2}))
    with pytest.raises(ConfigError, match="format_version 2 is not supported"):
        OnnxPolicy(d)
    side.write_text(json.dumps(doc)[:100])
    with pytest.raises(ConfigError, match="not valid JSON"):
        OnnxPolicy(d)
    side.unlink()
    with pytest.raises(FileNotFoundError, match="mmrobot export"):
        OnnxPolicy(d)


def test_newer_model_file_version_is_refused(exported, tmp_path):
    from mmrobot.deploy.sidecar import file_sha256

    _, dirs = exported
    d = tmp_path / "newer"
    shutil.copytree(dirs["fp32"], d)
    proto = onnx.load(str(d / MODEL_FILE))
    for p in proto.metadata_props:
        if p.key == "mmrobot_onnx_format_version":
            p.value = "7"
    onnx.save(proto, str(d / MODEL_FILE))
    doc = json.loads((d / SIDECAR_FILE).read_text())
    doc["model_bytes"] = (d / MODEL_FILE).stat().st_size
    doc["model_sha256"] = file_sha256(d / MODEL_FILE)
    (d / SIDECAR_FILE).write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="format version '7'"):
        OnnxPolicy(d)


def test_onnx_policy_never_imports_torch(exported):
    _, dirs = exported
    code = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, Block())
        import numpy as np
        sys.path.insert(0, {str(ROOT / "tests" / "policies")!r})
        from policy_testlib import random_observation
        from mmrobot.deploy import OnnxPolicy
        policy = OnnxPolicy({str(dirs["fp32"])!r})
        obs = random_observation(policy.config.streams, np.random.default_rng(0))
        chunk = policy.act(obs, "stack the blocks")
        assert chunk.actions.shape == (2, 3), chunk.actions.shape
        assert "torch" not in sys.modules
        print("OK", chunk.tokens.ravel().tolist())
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("OK")


def test_cli_export(tmp_path, capsys):
    _checkpoint(tmp_path / "ckpt")
    assert (
        main(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "e"), "--quantize", "int8"])
        == 0
    )
    assert "int8" in capsys.readouterr().out
    assert Sidecar.read(tmp_path / "e").precision == "int8"
    assert main(["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_onnx_and_torch_policies_decode_as_the_config_says(tmp_path):
    import dataclasses

    from mmrobot.policies import ActionTokenizer, TorchPolicy

    torch.manual_seed(0)
    cfg = tiny_config("mid", "parallel")
    dim = cfg.action.dim
    how = ("median",) + ("argmax",) * (dim - 1)
    cfg = cfg.replace(action=dataclasses.replace(cfg.action, decode=how))
    model = FusionPolicyModel(cfg).eval()
    save_checkpoint(model, tmp_path / "ckpt")
    export_onnx(tmp_path / "ckpt", tmp_path / "export")
    policy = OnnxPolicy(tmp_path / "export")
    assert policy.config.action.decode == how  # the sidecar carries it
    obs = random_observation(cfg.streams, np.random.default_rng(5), t_ns=7)
    batch = collate([obs], ["open the gripper"], cfg.streams, ByteTokenizer(cfg.language.max_len))
    logits, tokens = policy.run(batch)
    tok = ActionTokenizer.from_config(cfg.action)
    chunk = policy.act(obs, "open the gripper")
    np.testing.assert_array_equal(chunk.actions, tok.decode_logits(logits, how)[0])
    # an untrained network's bin distributions are wide: the median is not the argmax there
    argmax = tok.decode(tokens)[0]
    assert not np.allclose(chunk.actions[:, 0], argmax[:, 0])
    np.testing.assert_array_equal(chunk.actions[:, 1:], argmax[:, 1:])
    ref = TorchPolicy(model).act(obs, "open the gripper")
    np.testing.assert_allclose(ref.actions[:, 1:], chunk.actions[:, 1:])
