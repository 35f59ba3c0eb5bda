"""Episode videos: MP4 and GIF files read back, annotation, evaluation videos."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from mmrobot.envs.scene import choose_gl_backend

choose_gl_backend()  # before mujoco is first imported: headless EGL (or OSMesa) rendering

from mmrobot.core.errors import ConfigError  # noqa: E402
from mmrobot.train.video import VideoRecorder, annotate_frame, write_video  # noqa: E402

cv2 = pytest.importorskip("cv2")
Image = pytest.importorskip("PIL.Image")


def _frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Distinct frames: a bright bar that moves right, on a grey ramp."""
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 40 + 10 * i, np.uint8)
        f[:, 4 * i : 4 * i + 8] = (250, 30, 30)
        out.append(f)
    return out


def _read_mp4(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def test_mp4_round_trip(tmp_path):
    frames = _frames(9)
    path = write_video(tmp_path / "sub" / "a.mp4", frames, fps=20)
    got = _read_mp4(path)
    assert len(got) == 9
    assert got[0].shape == (48, 64, 3)
    # lossy codec: compare coarsely; the red bar is where it was written
    for i in (0, 8):
        col = 4 * i + 4
        assert got[i][24, col, 0] > 180 and got[i][24, col, 1] < 100
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(20, abs=0.01)
    cap.release()


def test_gif_round_trip(tmp_path):
    frames = _frames(7)
    path = write_video(tmp_path / "a.gif", frames, fps=10)
    with Image.open(path) as im:
        assert im.n_frames == 7
        assert im.size == (64, 48)
        assert im.info["duration"] == 100
        im.seek(6)
        last = np.asarray(im.convert("RGB"))
    assert tuple(last[24, 28]) == (250, 30, 30)


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ConfigError, match=r"\.mp4 or \.gif"):
        write_video(tmp_path / "a.avi", _frames(2))
    with pytest.raises(ValueError, match="no frames"):
        write_video(tmp_path / "a.mp4", [])
    with pytest.raises(ValueError, match="frame 1"):
        write_video(tmp_path / "a.mp4", [_frames(1)[0], _frames(1, 32, 32)[0]])
    assert not (tmp_path / "a.mp4").exists()


def test_annotate_writes_text_bands_only():
    frame = np.full((128, 128, 3), 120, np.uint8)
    before = frame.copy()
    out = annotate_frame(frame, "pick up the small red block please", "train | step 3")
    assert np.array_equal(frame, before)  # input untouched
    assert out.shape == frame.shape and out.dtype == np.uint8
    top, middle, bottom = out[:12], out[50:80], out[-8:]
    assert (top == 255).any()  # white text in the top band
    assert (top < 120).any()  # the band is darkened
    assert np.array_equal(middle, before[50:80])  # the scene in between is left alone
    assert (bottom != 120).any()
    long = annotate_frame(frame, "word " * 60)
    assert not np.array_equal(long[:40], out[:40])  # long text wraps onto more lines


def test_recorder_counts_frames(tmp_path):
    rec = VideoRecorder("reach the red block", "train | reach", fps=20)
    for i, f in enumerate(_frames(5)):
        rec.add(f, i, "success" if i == 4 else "")
    rec.add(None, 5)
    path = rec.save(tmp_path / "r.gif")
    with Image.open(path) as im:
        assert im.n_frames == 5


def test_evaluation_writes_one_video_per_requested_episode(tmp_path):
    pytest.importorskip("mujoco")
    from mmrobot.envs.sensors import SensorSuiteConfig
    from mmrobot.train.eval import EvalSettings, env_config_for_policy, evaluate

    env_config = env_config_for_policy(SensorSuiteConfig(image_size=32).stream_specs())
    env_config = replace(env_config, render_size=96)
    settings = EvalSettings(
        episodes=2,
        tasks=("reach",),
        splits=("train", "no_camera"),
        workers=0,
        max_steps=12,
        video_dir=str(tmp_path / "videos"),
        video_episodes=1,
    )
    result = evaluate("expert", settings, env_config=env_config)
    vids = [e for e in result.episodes if e.video]
    assert sorted(e.split for e in vids) == ["no_camera", "train"]
    assert all(e.seed == 0 for e in vids)
    for e in vids:
        frames = _read_mp4(e.video)
        assert len(frames) == e.steps + 1  # the reset frame and one per control tick
        assert frames[0].shape == (96, 96, 3)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "videos").rglob("*"))
    assert files == [
        "videos/no_camera",
        "videos/no_camera/reach_ep000.mp4",
        "videos/train",
        "videos/train/reach_ep000.mp4",
    ]
    doc = json.loads(json.dumps(result.to_dict()))
    assert sum(1 for e in doc["episodes"] if e["video"]) == 2
