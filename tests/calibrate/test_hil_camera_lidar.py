"""camera-intrinsics, hand-eye and lidar through the real drivers on the HIL rig (Dynamixel and
RPLIDAR bytes over pseudo-terminals, MJPEG camera frames through OpenCV), checked against the
simulation's ground truth with issue 17's targets."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("mujoco")
pytest.importorskip("cv2")

from hil_testlib import angle_deg, calibration_hil, truth_of  # noqa: E402

from mmrobot.cli import main  # noqa: E402
from mmrobot.drivers import load_rig  # noqa: E402


@pytest.fixture(scope="module")
def hil(tmp_path_factory):
    with calibration_hil(tmp_path_factory.mktemp("hil")) as rig:
        yield rig


def test_intrinsics_then_hand_eye_through_the_drivers_meet_the_targets(hil, tmp_path):
    truth = truth_of(hil)
    cam, he = tmp_path / "rig.cam.toml", tmp_path / "rig.he.toml"
    picture = tmp_path / "corners.png"
    fast = ["--views", "5", "--speed", "2"]
    assert main(["calibrate", "camera-intrinsics", str(hil), *fast, "--out", str(cam), "--picture", str(picture)]) == 0  # fmt: skip
    assert picture.stat().st_size > 10_000
    entry = load_rig(cam).driver("wrist_camera")
    intr = entry.intrinsics
    assert intr is not None and intr.image_size == (640, 480)  # the served frames, not 96 px
    k, kt = np.asarray(intr.camera_matrix), truth.true_intrinsics("wrist_cam")
    assert kt[0, 0] == pytest.approx(312.77, rel=1e-4)
    # focal length within 0.5 %, reprojection error at most 0.3 px (JPEG-coded frames)
    assert abs(k[0, 0] / kt[0, 0] - 1) < 0.005 and abs(k[1, 1] / kt[1, 1] - 1) < 0.005
    assert entry.calibration["camera-intrinsics"].residuals["rms_px"] <= 0.3

    assert main(["calibrate", "hand-eye", str(cam), *fast, "--out", str(he)]) == 0
    ex = load_rig(he).driver("wrist_camera").extrinsics
    assert ex.parent_frame == "tcp"
    x, xt = ex.matrix(), truth.true_camera_in_tcp("wrist_cam")
    # translation within 2 mm, rotation within 0.3 deg
    assert np.linalg.norm(x[:3, 3] - xt[:3, 3]) < 0.002
    assert angle_deg(x[:3, :3], xt[:3, :3]) < 0.3


def test_lidar_through_the_driver_finds_the_pose_the_rig_file_misstates(hil, tmp_path):
    truth = truth_of(hil).true_lidar_pose()
    # the user's guess: 5 cm and 8 deg away from where the HIL rig mounts the lidar
    text = hil.read_text()
    (true_line,) = [ln for ln in text.splitlines() if ln.startswith("extrinsics")]
    x, y, z = truth[:3, 3] + [0.04, -0.03, 0.0]
    yaw_t = math.atan2(truth[1, 0], truth[0, 0])
    guess = (
        f"extrinsics = {{ translation_m = [{x}, {y}, {z}], "
        f"rotation_rpy_rad = [0.0, 0.0, {yaw_t + 0.14}] }}"
    )
    rig = tmp_path / "rig.guess.toml"
    rig.write_text(text.replace(true_line, guess))
    out = tmp_path / "rig.lidar.toml"
    assert main(["calibrate", "lidar", str(rig), "--out", str(out)]) == 0
    ex = load_rig(out).driver("base_lidar").extrinsics
    # translation within 5 mm, yaw within 0.5 deg (1 cm range noise, 10 turns)
    assert np.hypot(*(np.asarray(ex.translation_m[:2]) - truth[:2, 3])) < 0.005
    assert abs(math.degrees(math.remainder(ex.rotation_rpy_rad[2] - yaw_t, 2 * math.pi))) < 0.5
    assert ex.translation_m[2] == pytest.approx(z)  # a planar scan cannot see the height: kept
