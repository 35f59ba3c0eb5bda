"""`mmrobot run --explain` (issue 15): every decision's attribution in the outcomes JSON and
beside the video frames; an ONNX policy is refused."""

import json

import pytest
from launch_texts import run_launch

from mmrobot.cli import main

cv2 = pytest.importorskip("cv2")


def test_run_explain_writes_shares_and_an_annotated_video(tmp_path, checkpoint):
    path = tmp_path / "run.toml"
    path.write_text(run_launch(checkpoint, max_seconds=0.2))
    out, video = tmp_path / "res.json", tmp_path / "run.mp4"
    argv = ["run", str(path), "-i", "push the red block to the left", "--explain"]
    assert main([*argv, "--json", str(out), "--video", str(video)]) == 0
    (row,) = json.loads(out.read_text())
    att = row["attribution"]
    assert att["groups"][0] == "instruction" and "camera" in att["modalities"]
    assert att["steps"] == list(range(len(att["steps"]))) and len(att["steps"]) == row["steps"]
    assert all(sum(r) == pytest.approx(1.0, abs=1e-3) for r in att["shares"])
    cap = cv2.VideoCapture(str(video))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[1] > frame.shape[0]  # the panel beside the frame
    png = tmp_path / "shares.png"
    assert main(["plot", str(out), "--out", str(png)]) == 0 and png.stat().st_size > 0
    # without --explain: no attribution in the outcomes
    assert main([*argv[:-1], "--json", str(out), "--overwrite"]) == 0
    assert "attribution" not in json.loads(out.read_text())[0]


def test_explaining_policy_refuses_a_policy_without_attribution():
    from mmrobot.core.errors import ConfigError
    from mmrobot.launch.explain import ExplainingPolicy

    class Onnxish:
        explains = False

    with pytest.raises(ConfigError, match="torch checkpoint"):
        ExplainingPolicy(Onnxish(), 50_000_000)
