"""``mmrobot calibrate``: results go into a validated copy of the rig file, ``--check`` reports
drift, and bad input stops with a message (exit 2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mmrobot.cli import main
from mmrobot.drivers import load_rig

RIG = Path(__file__).resolve().parents[2] / "drivers" / "emulated_rig.toml"


def test_ft_payload_writes_a_calibrated_copy_and_check_finds_drift(tmp_path, capsys):
    rig = tmp_path / "rig.toml"
    shutil.copy(RIG, rig)
    out = tmp_path / "rig.ft.toml"
    assert main(["calibrate", "ft-payload", str(rig), "--sim", "--out", str(out)]) == 0
    assert rig.read_text() == RIG.read_text()  # the source is never edited
    entry = load_rig(out).driver("wrist_ft")
    assert entry.payload is not None and entry.payload.mass_kg == pytest.approx(0.2205, rel=0.02)
    assert entry.bias == pytest.approx((1.5, -0.8, 2.0, 0.05, -0.03, 0.02), abs=0.04)
    assert entry.tare_on_open is False
    record = entry.calibration["ft-payload"]
    assert record.views == 8 and record.residuals["force_n"] < 0.05 and record.date
    text = out.read_text()
    assert (
        text.startswith("# calibrated copy of") and "# An emulated robot" in text
    )  # comments kept
    # a fresh measurement agrees with the copy; the original (no payload, zero bias) drifted
    assert main(["calibrate", "ft-payload", str(out), "--sim", "--check", "--seed", "4"]) == 0
    assert main(["calibrate", "ft-payload", str(rig), "--sim", "--check"]) == 1
    assert "DRIFTED" in capsys.readouterr().out
    # never overwritten silently
    assert main(["calibrate", "ft-payload", str(rig), "--sim", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_lidar_updates_x_y_yaw_and_keeps_the_height(tmp_path):
    out = tmp_path / "rig.lidar.toml"
    assert main(["calibrate", "lidar", str(RIG), "--sim", "--out", str(out)]) == 0
    ex = load_rig(out).driver("base_lidar").extrinsics
    # the simulated lidar sits on the base axis, facing forward
    assert abs(ex.translation_m[0]) < 0.005 and abs(ex.translation_m[1]) < 0.005
    assert abs(ex.rotation_rpy_rad[2]) < 0.0087
    assert ex.translation_m[2] == 0.30  # from the rig file: a planar scan cannot see it


def test_bad_input_is_explained(tmp_path, capsys):
    assert main(["calibrate", "hand-eye", str(RIG), "--sim", "--out", str(tmp_path / "x")]) == 2
    assert "run `mmrobot calibrate camera-intrinsics` first" in capsys.readouterr().err
    # without --sim it measures through the rig's drivers: here the devices are absent
    assert main(["calibrate", "lidar", str(RIG), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "port '/tmp/mmrobot-emu/rplidar' of 'base_lidar'" in err and "pass --sim" in err
    assert main(["calibrate", "ft-payload", str(RIG), "--sim", "--driver", "nope"]) == 2
    assert "no driver named 'nope'" in capsys.readouterr().err


def test_camera_intrinsics_then_hand_eye_chain_through_rig_copies(tmp_path):
    cam, he = tmp_path / "rig.cam.toml", tmp_path / "rig.he.toml"
    picture = tmp_path / "corners.png"
    args = ["--sim", "--views", "6"]
    assert main(["calibrate", "camera-intrinsics", str(RIG), *args, "--out", str(cam), "--picture", str(picture)]) == 0  # fmt: skip
    assert picture.stat().st_size > 10_000
    intr = load_rig(cam).driver("wrist_camera").intrinsics
    assert intr is not None and intr.image_size == (640, 480)
    assert intr.camera_matrix[0][0] == pytest.approx(312.77, rel=0.005)  # 240 / tan(37.5 deg)
    assert main(["calibrate", "hand-eye", str(cam), *args, "--out", str(he)]) == 0
    entry = load_rig(he).driver("wrist_camera")
    assert entry.intrinsics == intr  # kept
    ex = entry.extrinsics
    assert ex.parent_frame == "tcp"
    assert ex.translation_m == pytest.approx((0.06, 0.0, -0.08), abs=0.002)
    assert set(entry.calibration) == {"camera-intrinsics", "hand-eye"}
    assert "tsai_rotation_deg" in entry.calibration["hand-eye"].residuals
