"""mmrobot view: an MCAP recording, a dataset episode and an eval results file written as .rrd
and read back with Rerun's own reader (rerun.chunk.RrdReader): entity paths, row counts and
values."""

import json

import numpy as np
import pytest

from mmrobot.cli import main
from mmrobot.core import StreamSpec

rr = pytest.importorskip("rerun")
chunk = pytest.importorskip("rerun.chunk")

T0 = 1_700_000_000_000_000_000
SPECS = (
    StreamSpec("cam", "camera", (8, 10, 3), "uint8", 30.0),
    StreamSpec("lidar", "lidar", (12, 3), "float32", 10.0),
    StreamSpec("ft", "force", (6,), "float32", 500.0),
    StreamSpec("joints", "joints", (7,), "float32", 200.0),
)
COUNTS = {"cam": 3, "lidar": 2, "ft": 9, "joints": 5}


def read_rrd(path):
    """entity path -> (rows on the time line, the chunks' record batches), and static texts."""
    rows, batches, static = {}, {}, {}
    for c in chunk.RrdReader(path).stream():
        if c.entity_path == "/__properties":
            continue
        batch = c.to_record_batch()
        if c.is_static:
            static[c.entity_path] = batch
            continue
        rows[c.entity_path] = rows.get(c.entity_path, 0) + c.num_rows
        batches.setdefault(c.entity_path, []).append(batch)
    return rows, batches, static


def column(batches, name):
    return [v for b in batches for v in b.column(name).to_pylist()]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from mmrobot.drivers.recording import Recorder
    from mmrobot.sync import StreamBuffer

    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("rec") / "run.mcap"
    bufs = [StreamBuffer(s, capacity=32) for s in SPECS]
    ref = {}
    for k, b in enumerate(bufs):
        n = COUNTS[b.spec.name]
        times = T0 + np.arange(n) * 11_000_000 + k
        values = (
            rng.integers(0, 255, (n, *b.spec.shape), dtype=np.uint8)
            if b.spec.dtype == "uint8"
            else rng.normal(size=(n, *b.spec.shape)).astype(np.float32)
        )
        ref[b.spec.name] = (times, values)
    with Recorder(path, bufs) as rec:
        for b in bufs:
            for t, v in zip(*ref[b.spec.name]):
                assert b.push(int(t), v)
        rec.poll()
    return path, ref


def test_a_recording_becomes_one_entity_per_stream_with_every_sample(recording, tmp_path):
    from mmrobot.viz import view_file

    path, ref = recording
    result = view_file(path, tmp_path / "run.rrd")
    rows, batches, _ = read_rrd(tmp_path / "run.rrd")
    expected = {
        "/cameras/cam": 3,
        "/base/lidar/lidar": 2,
        "/series/ft": 9,
        "/series/joints": 5,
    }
    assert rows == expected
    assert {"/" + k: v for k, v in result.counts.items()} == expected
    # values and stamps as recorded
    ft = np.array(column(batches["/series/ft"], "Scalars:scalars"))
    np.testing.assert_allclose(ft, ref["ft"][1], rtol=1e-6)
    stamps = [v for b in batches["/series/ft"] for v in b.column("time").cast("int64").to_pylist()]
    assert stamps == list(ref["ft"][0])
    pts = column(batches["/base/lidar/lidar"], "Points3D:positions")
    np.testing.assert_allclose(np.array(pts[1]), ref["lidar"][1][1], rtol=1e-6)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    pytest.importorskip("h5py")
    from mmrobot.envs.dataset import DatasetWriter, EpisodeRecord

    path = tmp_path_factory.mktemp("ds") / "demos.h5"
    rng = np.random.default_rng(2)
    specs = tuple(s for s in SPECS if s.name != "ft") + (
        StreamSpec("ft", "force", (6,), "float32", 500.0, policy="interp", history=3),
    )
    with DatasetWriter(path, specs, -np.ones(7), np.ones(7), control_hz=20.0) as w:
        for e, n in enumerate((4, 6)):
            valid = {s.name: np.ones(n, bool) for s in specs}
            valid["cam"][1] = False  # a dropped camera frame: no image at that tick
            w.append(
                EpisodeRecord(
                    task="reach color=red",
                    instruction=f"instruction {e}",
                    seed=e,
                    success=bool(e),
                    split="train",
                    reason="" if e else "timeout",
                    values={
                        s.name: rng.integers(0, 255, (n, *s.obs_shape), dtype=np.uint8)
                        if s.dtype == "uint8"
                        else rng.normal(size=(n, *s.obs_shape)).astype(np.float32)
                        for s in specs
                    },
                    ages_ns={s.name: np.zeros(n, np.int64) for s in specs},
                    valid=valid,
                    actions=rng.normal(size=(n, 7)).astype(np.float32),
                    rewards=np.zeros(n, np.float32),
                    t_ns=np.arange(n, dtype=np.int64) * 50_000_000,
                )
            )
    return path


def test_a_dataset_episode_holds_its_ticks_actions_and_instruction(dataset, tmp_path, capsys):
    out = tmp_path / "ep1.rrd"
    assert main(["view", str(dataset), "--episode", "1", "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    rows, batches, _ = read_rrd(out)
    assert rows == {
        "/instruction": 1,
        "/cameras/cam": 5,  # 6 ticks, one masked
        "/base/lidar/lidar": 6,
        "/series/joints": 6,
        "/series/ft": 6,
        "/action": 6,
        "/status": 1,
    }
    assert column(batches["/instruction"], "TextDocument:text") == [["instruction 1"]]
    assert column(batches["/action"], "tick") == list(range(6))
    assert "success" in column(batches["/status"], "TextLog:text")[0][0]


def test_a_results_file_shows_the_attribution_shares(tmp_path):
    from mmrobot.viz import view_file

    groups = ["instruction", "cam", "lidar", "ft", "joints"]
    shares = [[0.1, 0.5, 0.2, 0.1, 0.1], [0.2, 0.4, 0.2, 0.1, 0.1], [0.3, 0.3, 0.2, 0.1, 0.1]]
    doc = {
        "format_version": 2,
        "episodes": [
            {
                "instruction": "lift the red block",
                "task": "pick color=red",
                "success": False,
                "reason": "timeout",
                "steps": 3,
            },
            {
                "instruction": "push it",
                "task": "push color=red",
                "success": True,
                "steps": 3,
                "attribution": {"groups": groups, "steps": [0, 1, 2], "shares": shares},
            },
        ],
    }
    path = tmp_path / "eval.json"
    path.write_text(json.dumps(doc))
    view_file(path, tmp_path / "e.rrd", episode=1)
    rows, batches, _ = read_rrd(tmp_path / "e.rrd")
    assert rows == {"/instruction": 1, "/status": 1, **{f"/attribution/{g}": 3 for g in groups}}
    cam = [v[0] for v in column(batches["/attribution/cam"], "Scalars:scalars")]
    assert cam == pytest.approx([0.5, 0.4, 0.3])
    assert column(batches["/attribution/cam"], "tick") == [0, 1, 2]


def test_bad_input_exits_2(dataset, tmp_path, capsys):
    assert main(["view", str(dataset), "--episode", "5", "--out", str(tmp_path / "x.rrd")]) == 2
    assert "--episode 5 out of range" in capsys.readouterr().err
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert main(["view", str(other)]) == 2
    assert "expected an MCAP recording (.mcap)" in capsys.readouterr().err
    assert main(["view", str(tmp_path / "missing.mcap")]) == 2
