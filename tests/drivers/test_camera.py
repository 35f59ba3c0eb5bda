"""OpenCV camera driver on a video file written in the test with cv2.VideoWriter."""

from __future__ import annotations

import numpy as np
import pytest

from mmrobot.core.errors import DeviceNotConnectedError, LifecycleError
from mmrobot.drivers import parse_rig

cv2 = pytest.importorskip("cv2")


def _write_video(path, n_frames=20, size=(160, 120), fps=30.0):
    """Frame i: left half pure blue, right half pure red (BGR), and a bright bar at row i."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for _i in range(n_frames):
        frame = np.zeros((h, w, 3), np.uint8)
        frame[:, : w // 2] = (255, 0, 0)  # BGR blue
        frame[:, w // 2 :] = (0, 0, 255)  # BGR red
        writer.write(frame)
    writer.release()
    return path


def _rig(device, **extra):
    entry = {"kind": "camera", "name": "cam", "device": device, **extra}
    return parse_rig({"driver": [entry]}, source="drivers/cam.toml")


def test_camera_reads_a_file_as_rgb_at_stream_shape(tmp_path):
    video = _write_video(tmp_path / "v.avi")
    (drv,) = _rig(
        str(video), stream={"name": "wrist_cam", "shape": [48, 64, 3], "latency_ms": 20}
    ).build_drivers()
    spec = drv.specs[0]
    assert (spec.name, spec.shape, spec.dtype, spec.latency_ns) == (
        "wrist_cam",
        (48, 64, 3),
        "uint8",
        20_000_000,
    )
    with pytest.raises(LifecycleError):
        drv.latest_frame()
    with drv:
        assert drv.wait_for_samples(10, timeout_s=5)
        t_ns, img = drv.latest()
        full = drv.latest_frame()
    assert img.shape == (48, 64, 3) and img.dtype == np.uint8
    assert full.shape == (120, 160, 3)
    # BGR -> RGB: the left half was blue, so channel 2 is high and channel 0 low after conversion
    left, right = img[:, :28].reshape(-1, 3).mean(0), img[:, 36:].reshape(-1, 3).mean(0)
    assert left[2] > 200 and left[0] < 40
    assert right[0] > 200 and right[2] < 40
    times, _ = drv.buffers["wrist_cam"].window(0, 2**62)
    # paced at the file's 30 fps
    # paced at the file's 30 fps: never faster (a stalled reader drops time, it does not burst);
    # slower only when the machine is loaded
    period_ns = 1e9 / 30
    assert np.diff(times).min() > 0.5 * period_ns
    assert (times[-1] - times[0]) / (len(times) - 1) < 3 * period_ns


def test_camera_file_ends_or_loops(tmp_path):
    video = _write_video(tmp_path / "v.avi", n_frames=5)
    (drv,) = _rig(str(video), pace=False).build_drivers()
    with drv:
        deadline_ok = drv.wait_for_samples(5, timeout_s=5)
        import time

        time.sleep(0.2)
        assert deadline_ok and drv.finished and drv.stats.samples == 5
    (looping,) = _rig(str(video), pace=False, loop=True).build_drivers()
    with looping:
        assert looping.wait_for_samples(12, timeout_s=5)


def test_missing_camera_names_device_and_fix(tmp_path):
    (drv,) = _rig(57).build_drivers()
    with pytest.raises(
        DeviceNotConnectedError, match=r"camera index 57 .*/dev/video57.*drivers/cam.toml"
    ):
        drv.open()
    (drv,) = _rig(str(tmp_path / "nope.mp4")).build_drivers()
    with pytest.raises(DeviceNotConnectedError, match="nope.mp4.*not found"):
        drv.open()
