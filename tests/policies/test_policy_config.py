from dataclasses import fields
from pathlib import Path

import pytest
import tomllib

from mmrobot.core.errors import ConfigError
from mmrobot.policies import PolicyConfig, load_policy_config
from mmrobot.policies.config import (
    ActionConfig,
    CameraConfig,
    LanguageConfig,
    LidarConfig,
    ModelConfig,
    TrainingConfig,
    VectorConfig,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = [ROOT / "policies" / "default.toml", ROOT / "policies" / "gpu.toml"]
SECTIONS = {
    "model": ModelConfig,
    "language": LanguageConfig,
    "camera": CameraConfig,
    "lidar": LidarConfig,
    "vector": VectorConfig,
    "action": ActionConfig,
    "training": TrainingConfig,
}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_match_the_default_spec(path):
    cfg = load_policy_config(path)
    from mmrobot.envs.sensors import default_stream_specs

    sim = {s.name: s for s in default_stream_specs()}
    assert [s.name for s in cfg.streams] == list(sim)  # the simulated rig's streams, in order
    assert all(s.obs_shape == sim[s.name].obs_shape for s in cfg.streams)
    assert cfg.action.dim == 7 and cfg.action.horizon == 8 and cfg.action.bins == 256
    assert cfg.streams[3].obs_shape == (10, 6)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_document_every_parameter(path):
    text = path.read_text()
    data = tomllib.loads(text)
    lines = text.splitlines()
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            if f.name in ("edges", "vocabulary", "lexicon"):
                continue  # computed from data, written into checkpoints only
            assert f.name in data[section], f"[{section}] {f.name} missing from {path.name}"
            start = lines.index(f"[{section}]")
            i = next(i for i, ln in enumerate(lines) if i > start and ln.startswith(f"{f.name} ="))
            assert lines[i - 1].startswith("#"), f"{f.name} has no comment above it in {path.name}"


def test_gpu_config_is_larger():
    small, big = (load_policy_config(p) for p in CONFIGS)
    assert big.model.width > small.model.width and big.model.depth > small.model.depth


def _data():
    return tomllib.loads(CONFIGS[0].read_text())


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d["model"].update(widht=64), r"unknown key\(s\) \['widht'\]"),
        (lambda d: d.update(extra=1), r"unknown key\(s\) \['extra'\]"),
        (lambda d: d["streams"][0].update(fps=3), r"unknown key\(s\) \['fps'\]"),
        (lambda d: d["model"].update(fusion="sideways"), "model.fusion is 'sideways'"),
        (lambda d: d["model"].update(width=100, heads=3), "not a multiple of model.heads"),
        (lambda d: d["model"].update(depth=0), r"model.depth must be in \[1, 64\]"),
        (lambda d: d["action"].update(low=[0.0] * 3), "action.low must be a list of 7"),
        (lambda d: d["action"].update(binning="quantile"), "needs action.edges"),
        (
            lambda d: d["training"]["modality_dropout"].update(sonar=0.5),
            "'sonar' is not a modality",
        ),
        (
            lambda d: d["lidar"].update(encoder="points", groups=400),
            "must be <= the 360 points",
        ),
        (lambda d: d["lidar"].update(tokens=7), "must divide the 360 rays"),
        (lambda d: d["lidar"].update(encoder="voxels"), "lidar.encoder is 'voxels'"),
        (lambda d: d["language"].update(stride=5), "multiple of language.stride 5"),
        (
            lambda d: d["training"].update(aux_weights={"velocity": 1.0}),
            "'velocity' is not an auxiliary target",
        ),
        (lambda d: d.update(normalization={"ft": {"mean": [0] * 5, "std": [1] * 5}}), "needs 6"),
        (
            lambda d: d.update(normalization={"ft": {"mean": [0] * 6, "std": [0] * 6}}),
            "std must be > 0",
        ),
        (lambda d: d.update(format_version=3), "format_version 3 is not supported"),
        (lambda d: d.update(format_version=1), "format v1 .* retrain it"),
        (lambda d: d["streams"].append(dict(d["streams"][0])), "more than once"),
        (lambda d: d["streams"][1].update(shape=[64, 64, 3]), "same shape"),
    ],
)
def test_invalid_configs_name_the_problem(edit, match):
    d = _data()
    edit(d)
    with pytest.raises(ConfigError, match=match):
        PolicyConfig.from_dict(d)


def test_unsupported_modality_is_a_clear_error():
    d = _data()
    d["streams"].append(
        {"name": "d", "modality": "depth", "shape": [8, 8], "dtype": "float32", "rate_hz": 10.0}
    )
    with pytest.raises(ConfigError, match="no encoder"):
        PolicyConfig.from_dict(d)


def test_configs_from_before_film_load_without_it():
    data = load_policy_config(CONFIGS[0]).to_dict()
    del data["camera"]["film"]  # as in checkpoints written before the key existed
    assert PolicyConfig.from_dict(data).camera.film is False


def test_pixel_film_loads_with_or_without_film_and_is_off_in_old_configs():
    data = load_policy_config(CONFIGS[0]).to_dict()
    data["camera"].update(film=False, pixel_film=True)
    assert PolicyConfig.from_dict(data).camera.pixel_film is True
    del data["camera"]["pixel_film"]  # configs written before the key: off
    assert PolicyConfig.from_dict(data).camera.pixel_film is False


def test_dict_round_trip_is_lossless():
    d = _data()
    d["normalization"] = {"ft": {"mean": [0.5] * 6, "std": [2.0] * 6}}
    cfg = PolicyConfig.from_dict(d)
    again = PolicyConfig.from_dict(cfg.to_dict())
    assert again == cfg
    assert again.normalization["ft"].std == (2.0,) * 6


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_policy_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nwidth = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_policy_config(bad)


def test_camera_map_needs_position_heads_film_and_a_camera_stream():
    data = load_policy_config(CONFIGS[0]).to_dict()
    assert data["training"]["camera_map"] == 0.0  # off in the shipped config
    data["training"]["camera_map"] = 0.5
    cfg = PolicyConfig.from_dict(data)
    assert cfg.training.camera_maps == ["block_rel", "goal_rel"]  # channel order
    weights = cfg.training.loss_weights
    assert weights["camera_map/block_rel"] == weights["camera_map/goal_rel"] == 0.5
    for change, message in [
        ({"training": {"camera_map_stream": "lidar"}}, "is not a camera stream"),
        (
            {"camera": {"film": False, "pixel_film": False}},
            "needs camera.film or camera.pixel_film",
        ),
        ({"camera": {"stem_channels": [16, 32, 1]}}, "widen camera.stem_channels"),
        ({"training": {"encoder_aux": False}}, "trains a map per camera position head"),
    ]:
        bad = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
        for section, keys in change.items():
            bad[section] = {**bad[section], **keys}
        with pytest.raises(ConfigError, match=message):
            PolicyConfig.from_dict(bad)
    del data["training"]["camera_map"]  # configs written before the key: off
    assert PolicyConfig.from_dict(data).training.camera_maps == []
