"""``mmrobot eval --explain`` and ``mmrobot plot`` of its shares (issue 15)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmrobot.envs.scene import choose_gl_backend

choose_gl_backend()  # before mujoco is first imported: headless EGL (or OSMesa) rendering

from mmrobot.core.errors import ConfigError  # noqa: E402
from mmrobot.core.types import ActionChunk, Attribution  # noqa: E402
from mmrobot.policies.base import Policy  # noqa: E402
from mmrobot.train.eval import EvalSettings, evaluate  # noqa: E402

pytest.importorskip("mujoco")
pytest.importorskip("gymnasium")
cv2 = pytest.importorskip("cv2")


def test_eval_explain_writes_shares_video_and_plot(tiny_checkpoint, tmp_path):
    from mmrobot.cli import main

    out, vids = tmp_path / "eval.json", tmp_path / "videos"
    argv = ["eval", "--policy", str(tiny_checkpoint), "--tasks", "reach", "--episodes", "1"]
    argv += ["--max-steps", "4", "--splits", "train,no_camera", "--workers", "0"]
    argv += ["--json", str(out), "--video", str(vids), "--explain", "--no-progress"]
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["explain"] is True
    by_split = {e["split"]: e for e in doc["episodes"]}
    cams = []
    for split, ep in by_split.items():
        att = ep["attribution"]
        assert att["method"] == "rollout" and att["groups"][0] == "instruction"
        cams = [g for g, m in zip(att["groups"], att["modalities"]) if m == "camera"]
        assert cams
        assert len(att["steps"]) == len(att["shares"]) == ep["policy_calls"]
        for row in att["shares"]:
            assert sum(row) == pytest.approx(1.0, abs=1e-3)
        cam_share = [att["mean_shares"][c] for c in cams]
        assert all(v == 0.0 for v in cam_share) == (split == "no_camera")
        assert np.shape(att["mean_camera_maps"][cams[0]]) == (2, 2)
        # the video: a panel beside every frame, every frame of one size
        cap = cv2.VideoCapture(ep["video"])
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape[1] > frame.shape[0]
    # mmrobot plot draws an explained episode's shares over its ticks
    png = tmp_path / "att.png"
    assert main(["plot", str(out), "--episode", "1", "--out", str(png)]) == 0
    assert png.stat().st_size > 0
    assert main(["plot", str(out), "--episode", "5"]) != 0


def test_explain_needs_a_policy_that_explains():
    with pytest.raises(ConfigError, match="torch checkpoint"):
        evaluate("expert", EvalSettings(workers=0, tasks=("reach",), explain=True))

    class Still(Policy):  # a Policy object that cannot explain
        def act(self, observation, instruction):
            return ActionChunk(observation.t_ns, np.zeros((1, 7), np.float32), 50_000_000)

    with pytest.raises(ConfigError, match="Still does not"):
        evaluate(Still(), EvalSettings(workers=0, tasks=("reach",), explain=True))


def test_attribution_panel_keeps_the_frame_height_and_draws_the_heatmap():
    from mmrobot.train.video import VideoRecorder, heatmap_overlay

    a = Attribution(
        {"instruction": 0.5, "cam": 0.5},
        {"instruction": "text", "cam": "camera"},
        {"cam": np.array([[0.5, 0.0], [0.0, 0.0]], np.float32)},
        {"cam": 0.0},
    )
    img = np.full((32, 32, 3), 128, np.uint8)
    over = heatmap_overlay(img, a.camera_maps["cam"])
    assert (over[:16, :16] != 128).any() and (over[16:, 16:] == 128).all()
    even = heatmap_overlay(img, np.full((2, 2), 0.1, np.float32))
    assert (even == 128).all()  # an even spread over the patches: no tint
    rec = VideoRecorder("pick it up", explain=True)
    frame = np.zeros((120, 160, 3), np.uint8)
    rec.add(frame, 0)  # before the first decision: an empty panel of the same size
    rec.add(frame, 1, "", a, {"cam": img})
    assert rec.frames[0].shape == rec.frames[1].shape == (120, 360, 3)
    assert not np.array_equal(rec.frames[0], rec.frames[1])
