"""mmrobot dataset export --format lerobot: the LeRobotDataset v3 layout, read back with pyarrow
and PyAV (no maintained LeRobot reader installs beside this project's torch)."""

import json

import numpy as np
import pytest

from mmrobot.cli import main
from mmrobot.core import StreamSpec
from mmrobot.envs.dataset import DatasetWriter, EpisodeRecord

pa = pytest.importorskip("pyarrow")
av = pytest.importorskip("av")
pq = pytest.importorskip("pyarrow.parquet")

STREAMS = (
    StreamSpec("cam", "camera", (32, 32, 3), "uint8", 30.0),
    StreamSpec("lidar", "lidar", (16, 3), "float32", 10.0),
    StreamSpec("ft", "force", (6,), "float32", 500.0, policy="interp", history=3),
    StreamSpec("joints", "joints", (7,), "float32", 200.0, policy="interp", history=3),
)
STEPS = (5, 7)
INSTRUCTIONS = ("lift the red block", "push the blue block left")
FPS = 20


def _image(episode: int, step: int) -> np.ndarray:
    """A smooth picture (video codecs keep it) that differs per episode and step."""
    y, x = np.mgrid[0:32, 0:32]
    img = np.stack([x * 6 + step * 10, y * 6, np.full_like(x, 60 + 120 * episode)], -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _episodes():
    rng = np.random.default_rng(3)
    out = []
    for e, n in enumerate(STEPS):
        jitter = rng.integers(-2_000_000, 2_000_000, n)
        jitter[0] = 0
        out.append(
            EpisodeRecord(
                task=f"pick color=red #{e}",
                instruction=INSTRUCTIONS[e],
                seed=10 + e,
                success=e == 0,
                split="train",
                reason="",
                values={
                    "cam": np.stack([_image(e, t) for t in range(n)]),
                    "lidar": rng.normal(size=(n, 16, 3)).astype(np.float32),
                    "ft": rng.normal(size=(n, 3, 6)).astype(np.float32),
                    "joints": rng.normal(size=(n, 3, 7)).astype(np.float32),
                },
                ages_ns={s.name: rng.integers(0, 9_000_000, n) for s in STREAMS},
                valid={s.name: rng.random(n) < 0.8 for s in STREAMS},
                actions=rng.normal(size=(n, 7)).astype(np.float32),
                rewards=(np.arange(n) == n - 1).astype(np.float32),
                t_ns=7_000_000_000 + np.arange(n) * 50_000_000 + jitter,
            )
        )
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("lerobot")
    eps = _episodes()
    with DatasetWriter(d / "demos.h5", STREAMS, -np.ones(7), np.ones(7), control_hz=FPS) as w:
        for ep in eps:
            w.append(ep)
    assert (
        main(["dataset", "export", str(d / "demos.h5"), str(d / "out"), "--format", "lerobot"]) == 0
    )
    return d, eps


def _column(table, name):
    """A column as a numpy array of its feature's shape."""
    col = table.column(name).combine_chunks()
    n = len(col)
    while pa.types.is_fixed_size_list(col.type):
        col = col.flatten()
    return col.to_numpy(zero_copy_only=False).reshape(n, -1)


def test_the_layout_and_info_json_are_lerobot_v3(exported):
    d, eps = exported
    root = d / "out"
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (2, 12, 2)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert (
        info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    )
    f = info["features"]
    assert f["observation.images.cam"]["dtype"] == "video"
    assert f["observation.images.cam"]["shape"] == [32, 32, 3]
    assert f["observation.lidar.lidar"] == {
        "dtype": "float32",
        "shape": [16, 3],
        "names": ["points", "xyz"],
    }
    assert f["observation.state"]["shape"] == [13]
    assert f["observation.state"]["names"][:6] == [
        f"ft.{x}" for x in ("fx", "fy", "fz", "tx", "ty", "tz")
    ]
    assert f["observation.state"]["names"][-1] == "joints.gripper"
    assert info["mmrobot"]["state_layout"] == {"ft": [0, 6], "joints": [6, 13]}
    for key in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert f[key]["shape"] == [1]
    # the measured stamps' largest departure from frame_index / fps (the jitter put in)
    jitter = max(
        np.abs((ep.t_ns - ep.t_ns[0]) * 1e-9 - np.arange(len(ep.t_ns)) / FPS).max() for ep in eps
    )
    assert info["mmrobot"]["time"]["max_abs_error_s"] == pytest.approx(jitter, abs=1e-9)
    assert 0 < jitter < 0.002
    for rel in (
        "meta/stats.json",
        "meta/tasks.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "data/chunk-000/file-000.parquet",
        "videos/observation.images.cam/chunk-000/file-000.mp4",
    ):
        assert (root / rel).is_file(), rel
    # every data column is a feature, and every non-video feature is a column
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    assert set(data.column_names) == {k for k, v in f.items() if v["dtype"] != "video"}


def test_the_values_round_trip(exported):
    d, eps = exported
    root = d / "out"
    data = pq.read_table(root / "data/chunk-000/file-000.parquet")
    tasks = pq.read_table(root / "meta/tasks.parquet").to_pylist()
    task_of = {r["task_index"]: r["task"] for r in tasks}
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [e["length"] for e in episodes] == list(STEPS)
    assert [e["tasks"] for e in episodes] == [[i] for i in INSTRUCTIONS]
    assert [e["mmrobot/success"] for e in episodes] == [True, False]
    np.testing.assert_array_equal(_column(data, "index")[:, 0], np.arange(12))
    for e, (ep, meta) in enumerate(zip(eps, episodes)):
        rows = slice(meta["dataset_from_index"], meta["dataset_to_index"])
        n = len(ep.actions)
        np.testing.assert_array_equal(_column(data, "episode_index")[rows, 0], e)
        np.testing.assert_array_equal(_column(data, "frame_index")[rows, 0], np.arange(n))
        np.testing.assert_allclose(
            _column(data, "timestamp")[rows, 0], np.arange(n) / FPS, rtol=1e-6
        )
        np.testing.assert_array_equal(_column(data, "observation.t_ns")[rows, 0], ep.t_ns)
        assert {task_of[i] for i in _column(data, "task_index")[rows, 0]} == {ep.instruction}
        np.testing.assert_array_equal(_column(data, "action")[rows], ep.actions)
        np.testing.assert_array_equal(_column(data, "next.reward")[rows, 0], ep.rewards)
        np.testing.assert_array_equal(_column(data, "next.done")[rows, 0], np.arange(n) == n - 1)
        state = np.concatenate([ep.values["ft"][:, -1], ep.values["joints"][:, -1]], 1)
        np.testing.assert_array_equal(_column(data, "observation.state")[rows], state)
        np.testing.assert_array_equal(
            _column(data, "observation.lidar.lidar")[rows], ep.values["lidar"].reshape(n, -1)
        )
        names = [s.name for s in STREAMS]
        np.testing.assert_array_equal(
            _column(data, "observation.valid")[rows], np.stack([ep.valid[k] for k in names], 1)
        )
        np.testing.assert_array_equal(
            _column(data, "observation.age_ns")[rows], np.stack([ep.ages_ns[k] for k in names], 1)
        )
    stats = json.loads((root / "meta/stats.json").read_text())
    actions = np.concatenate([ep.actions for ep in eps])
    np.testing.assert_allclose(stats["action"]["mean"], actions.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["action"]["std"], actions.std(0), rtol=1e-4, atol=1e-6)
    assert stats["action"]["count"] == [12]
    assert np.shape(stats["observation.images.cam"]["mean"]) == (3, 1, 1)


def test_the_video_holds_every_frame_where_the_episodes_say(exported):
    d, eps = exported
    root = d / "out"
    episodes = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    with av.open(str(root / "videos/observation.images.cam/chunk-000/file-000.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == sum(STEPS)
    key = "videos/observation.images.cam"
    for e, (ep, meta) in enumerate(zip(eps, episodes)):
        start = round(meta[f"{key}/from_timestamp"] * FPS)
        assert round(meta[f"{key}/to_timestamp"] * FPS) - start == len(ep.actions)
        for t, original in enumerate(ep.values["cam"]):
            decoded = frames[start + t].astype(float)
            err = np.abs(decoded - original).mean()
            assert err < 4, (e, t, err)  # lossy codec, a smooth picture
            other = _image(1 - e, t).astype(float)  # the other episode's frame is far off
            assert np.abs(decoded - other).mean() > 10 * max(err, 1)


def test_bad_input_is_refused_with_exit_2(exported, tmp_path, capsys):
    d, _ = exported
    h5 = str(d / "demos.h5")
    assert main(["dataset", "export", h5, str(d / "out"), "--format", "lerobot"]) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err
    missing = str(tmp_path / "none.h5")
    assert main(["dataset", "export", missing, str(tmp_path / "o"), "--format", "lerobot"]) == 2
    assert "does not exist" in capsys.readouterr().err
