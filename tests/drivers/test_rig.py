"""Rig files: shipped examples, validation errors that name file, entry and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmrobot.core.errors import ConfigError
from mmrobot.drivers import Extrinsics, driver_kinds, load_rig, parse_rig

ROOT = Path(__file__).resolve().parents[2]

# The default observation spec agreed across sim, policy and deployment (COMMON.md).
DEFAULT_STREAMS = {
    "scene_cam": ("camera", (96, 96, 3), "uint8"),
    "wrist_cam": ("camera", (96, 96, 3), "uint8"),
    "lidar": ("lidar", (360, 3), "float32"),
    "ft": ("force", (6,), "float32"),
    "joints": ("joints", (7,), "float32"),
}


@pytest.mark.parametrize("name", ["emulated_rig.toml", "robot_example.toml"])
def test_shipped_rigs_load_and_match_the_default_observation_spec(name):
    rig = load_rig(ROOT / "drivers" / name)
    specs = {s.name: s for s in rig.specs()}
    assert set(specs) == set(DEFAULT_STREAMS)
    for stream, (modality, shape, dtype) in DEFAULT_STREAMS.items():
        s = specs[stream]
        assert (s.modality, s.shape, s.dtype) == (modality, shape, dtype)
    assert specs["ft"].history == 10 and specs["joints"].history == 10
    assert specs["joints"].policy == "interp" and specs["lidar"].policy == "causal"
    assert [a.kind for a in rig.actuators] == ["dynamixel"]
    assert {"camera", "rplidar", "ft300", "dynamixel"} <= {d.kind for d in rig.drivers}


def test_every_shipped_kind_is_registered():
    assert {"camera", "rplidar", "ld06", "ft300", "dynamixel"} <= set(driver_kinds())


def _one(entry: dict, source: str = "drivers/arm.toml"):
    return parse_rig({"driver": [entry]}, source=source)


def test_wrong_field_names_file_entry_and_field():
    with pytest.raises(ConfigError) as e:
        _one({"kind": "ft300", "name": "wrist_ft", "port": "/dev/x", "baudrate": 19200})
    msg = str(e.value)
    assert "drivers/arm.toml" in msg and "driver #1 'wrist_ft'" in msg and "`baudrate`" in msg
    assert "baud_rate" in msg  # the expected spelling is listed


def test_bad_value_names_the_nested_field():
    entry = {
        "kind": "dynamixel",
        "name": "arm",
        "port": "/dev/x",
        "servos": [
            {"id": 1, "model": "XM430-W350", "joint": "a"},
            {"id": 2, "model": "XM999", "joint": "b"},
        ],
    }
    with pytest.raises(
        ConfigError, match=r"drivers/arm.toml: driver #1 'arm'.*`servos.1.model`.*XM999"
    ):
        _one(entry)


def test_duplicate_servo_ids_and_stream_names_are_refused():
    servos = [
        {"id": 1, "model": "XM430-W350", "joint": "a"},
        {"id": 1, "model": "XM430-W350", "joint": "b"},
    ]
    with pytest.raises(ConfigError, match="unique"):
        _one({"kind": "dynamixel", "name": "arm", "port": "/dev/x", "servos": servos})
    with pytest.raises(
        ConfigError, match=r"stream 'lidar' is produced by both driver 'a' and driver 'b'"
    ):
        parse_rig(
            {
                "driver": [
                    {"kind": "ld06", "name": "a", "port": "/dev/x"},
                    {"kind": "rplidar", "name": "b", "port": "/dev/y"},
                ]
            }
        )


def test_unknown_kind_and_top_level_key():
    with pytest.raises(ConfigError, match=r"unknown driver kind 'sonar'; known kinds: \["):
        _one({"kind": "sonar", "name": "s"})
    with pytest.raises(ConfigError, match="unknown top-level key"):
        parse_rig({"drivers": []}, source="drivers/x.toml")


def test_stream_overrides_and_bad_spec_are_reported():
    rig = _one(
        {
            "kind": "ft300",
            "name": "ft",
            "port": "/dev/x",
            "stream": {"name": "wrench", "rate_hz": 250, "latency_ms": 1.5},
        }
    )
    (spec,) = rig.specs()
    assert (spec.name, spec.rate_hz, spec.latency_ns, spec.shape) == (
        "wrench",
        250,
        1_500_000,
        (6,),
    )
    with pytest.raises(
        ConfigError, match=r"drivers/arm.toml: driver 'cam'.*'interp' needs a float dtype"
    ):
        _one({"kind": "camera", "name": "cam", "device": 0, "stream": {"policy": "interp"}})


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[driver]\nkind=", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_rig(bad)
    with pytest.raises(FileNotFoundError, match="nope.toml"):
        load_rig(tmp_path / "nope.toml")


def test_disabled_entry_is_validated_but_not_built():
    rig = parse_rig(
        {
            "driver": [
                {"kind": "ld06", "name": "a", "port": "/dev/x", "enabled": False},
                {"kind": "rplidar", "name": "b", "port": "/dev/y"},
            ]
        }
    )
    assert [d.name for d in rig.build_drivers()] == ["b"]
    with pytest.raises(ConfigError, match="`enabled`"):
        parse_rig({"driver": [{"kind": "ld06", "name": "a", "port": "/dev/x", "enabled": "maybe"}]})


def test_extrinsics_rotation_is_proper_and_matches_hand_values():
    ext = Extrinsics(translation_m=(1.0, 2.0, 3.0), rotation_rpy_rad=(0.0, np.pi / 2, 0.0))
    r = ext.rotation()
    assert r @ r.T == pytest.approx(np.eye(3), abs=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    # pitch +90 deg about y maps sensor x onto base -z
    assert ext.apply(np.array([[1.0, 0.0, 0.0]]))[0] == pytest.approx([1.0, 2.0, 2.0], abs=1e-12)
    yaw = Extrinsics(rotation_rpy_rad=(0.0, 0.0, np.pi / 2))
    assert yaw.apply(np.array([[1.0, 0.0, 0.0]]))[0] == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
