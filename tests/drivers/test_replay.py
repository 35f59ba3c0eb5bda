"""Replay driver: recorded MCAP files back into StreamBuffers, paced, fast or manual; CLI."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.records import Chunk, Message
from mcap.stream_reader import StreamReader, breakup_chunk

from mmrobot.core import ConfigError, LifecycleError, ManualClock, StreamSpec
from mmrobot.drivers.base import Health
from mmrobot.drivers.recording import Recorder, read_recording
from mmrobot.drivers.replay import Replay
from mmrobot.sync import StreamBuffer, Synchronizer

T0 = 5_000_000_000

CAM = StreamSpec("scene_cam", "camera", (8, 8, 3), "uint8", 30.0, max_age_ns=100_000_000)
FT = StreamSpec("ft", "force", (6,), "float32", 500.0, policy="interp", max_age_ns=20_000_000)
JOINTS = StreamSpec("joints", "joints", (7,), "float32", 200.0, policy="interp", history=3)


def make_log(path, n_ft=50, n_cam=4, n_joints=20, chunk_size=1 << 20):
    """ft every 2 ms, camera every 33 ms, joints every 5 ms; values encode the index."""
    bufs = {s.name: StreamBuffer(s) for s in (CAM, FT, JOINTS)}
    ref = {}
    with Recorder(path, list(bufs.values()), chunk_size=chunk_size) as rec:
        for name, n, period in (
            ("ft", n_ft, 2_000_000),
            ("scene_cam", n_cam, 33_000_000),
            ("joints", n_joints, 5_000_000),
        ):
            spec = bufs[name].spec
            times = T0 + period * np.arange(n) + 17
            values = np.stack([np.full(spec.shape, i + 1, dtype=spec.dtype) for i in range(n)])
            for t, v in zip(times, values):
                bufs[name].push(int(t), v)
            ref[name] = (times, values)
        rec.poll()
    return ref


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "log.mcap"
    return path, make_log(path)


def test_manual_mode_pushes_exactly_up_to_a_stamp(log):
    path, ref = log
    rp = Replay.from_file(path, mode="manual")
    assert {s.name: s for s in rp.specs} == {"scene_cam": CAM, "ft": FT, "joints": JOINTS}
    with rp:
        cut = T0 + 40_000_000
        n = rp.advance_to(cut)
        expected = sum(int((times <= cut).sum()) for times, _ in ref.values())
        assert n == expected
        for name, (times, values) in ref.items():
            got_t, got_v = rp.buffers[name].window(0, 2**62)
            np.testing.assert_array_equal(got_t, times[times <= cut])
            np.testing.assert_array_equal(got_v, values[times <= cut])
        assert rp.position_ns == max(int(t[t <= cut].max()) for t, _ in ref.values())
        # then one at a time, in stamp order, to the end
        stamps = []
        while (item := rp.step()) is not None:
            stamps.append(item[1])
        assert stamps == sorted(stamps)
        assert rp.done and rp.played == sum(len(t) for t, _ in ref.values())
        assert rp.health is Health.STALE
        assert rp.stats.samples == rp.played and rp.stats.rejected == 0


def test_synchronizer_over_a_replay_sees_the_recorded_values(log):
    path, ref = log
    with Replay.from_file(path, mode="manual") as rp:
        sync = Synchronizer(list(rp.buffers.values()))
        t = int(ref["joints"][0][10])  # exactly a joints stamp
        rp.advance_to(t)
        obs = sync.observe(t)
    # joints: history 3 at t, t - 5 ms, t - 10 ms = recorded samples 8, 9, 10 (values 9, 10, 11)
    np.testing.assert_array_equal(obs.values["joints"][:, 0], [9.0, 10.0, 11.0])
    assert obs.valid["ft"] and obs.valid["scene_cam"]
    i_cam = int(np.searchsorted(ref["scene_cam"][0], t, side="right") - 1)
    np.testing.assert_array_equal(obs.values["scene_cam"], ref["scene_cam"][1][i_cam])


def test_realtime_mode_is_paced_by_the_clock(log):
    path, ref = log
    clock = ManualClock(1_000)
    all_times = np.sort(np.concatenate([t for t, _ in ref.values()]))
    first = int(all_times[0])
    with Replay.from_file(path, mode="realtime", speed=2.0, clock=clock) as rp:

        def wait_for(n):
            end = time.monotonic() + 5
            while rp.played < n and time.monotonic() < end:
                time.sleep(0.002)
            time.sleep(0.03)  # and nothing more arrives
            return rp.played

        assert wait_for(1) == int((all_times == first).sum())  # the first is due at once
        clock.advance(10_000_000)  # 10 ms of clock at speed 2: 20 ms of log
        due = int((all_times <= first + 20_000_000).sum())
        assert wait_for(due) == due
        clock.advance(1_000_000_000)
        assert rp.wait_done(5)
        assert rp.played == len(all_times)


def test_fast_mode_plays_everything(log):
    path, ref = log
    with Replay.from_file(path, mode="fast") as rp:
        assert rp.wait_done(5)
        for name, (times, values) in ref.items():
            got_t, got_v = rp.buffers[name].window(0, 2**62)
            np.testing.assert_array_equal(got_t, times)
            np.testing.assert_array_equal(got_v, values)


def test_reopen_plays_from_the_start(log):
    path, ref = log
    rp = Replay.from_file(path, mode="manual")
    for _ in range(2):
        with rp:
            rp.advance_to(2**62)
            assert rp.played == sum(len(t) for t, _ in ref.values())
            assert len(rp.buffers["ft"]) == len(ref["ft"][0])
            assert rp.stats.rejected == 0


def test_lifecycle_and_mode_errors(log):
    path, _ = log
    rp = Replay.from_file(path, mode="manual")
    with pytest.raises(LifecycleError, match="before open"):
        rp.advance_to(0)
    rt = Replay.from_file(path, mode="realtime")
    with rt, pytest.raises(LifecycleError, match="mode='manual'"):
        rt.step()
    assert rt.health is Health.CLOSED


def test_bad_input_is_named(tmp_path, log):
    path, _ = log
    with pytest.raises(FileNotFoundError, match="missing.mcap"):
        Replay.from_file(tmp_path / "missing.mcap")
    bad = tmp_path / "bad.mcap"
    bad.write_bytes(b"PK\x03\x04 a zip, not a log")
    with pytest.raises(ConfigError, match="bad.mcap is not an MCAP file"):
        Replay.from_file(bad)
    with pytest.raises(ConfigError, match=r"'/lidar' is not in .*topics there: /ft"):
        Replay.from_file(path, {"/lidar": "lidar"})
    with pytest.raises(ConfigError, match="speed"):
        Replay.from_file(path, speed=0.0)


def test_topic_mapping_selects_and_renames(log):
    path, ref = log
    with Replay.from_file(path, {"/ft": "wrist_ft"}, mode="fast") as rp:
        assert [s.name for s in rp.specs] == ["wrist_ft"]
        assert rp.specs[0].shape == (6,) and rp.specs[0].rate_hz == FT.rate_hz
        assert rp.wait_done(5)
        np.testing.assert_array_equal(rp.buffers["wrist_ft"].window(0, 2**62)[1], ref["ft"][1])


def test_replay_in_a_rig_file_resolves_paths_next_to_it(tmp_path, log):
    from mmrobot.drivers import load_rig

    path, ref = log
    (tmp_path / "drivers").mkdir()
    rig_file = tmp_path / "drivers" / "replay.toml"
    rig_file.write_text(
        '[[driver]]\nkind = "replay"\nname = "log"\npath = "../log.mcap"\nmode = "manual"\n'
    )
    (drv,) = load_rig(rig_file).build_drivers()
    assert isinstance(drv, Replay) and drv.path == rig_file.parent / "../log.mcap"
    with drv:
        drv.advance_to(2**62)
        np.testing.assert_array_equal(drv.buffers["joints"].window(0, 2**62)[0], ref["joints"][0])
    bad = tmp_path / "drivers" / "bad.toml"
    bad.write_text('[[driver]]\nkind = "replay"\nname = "log"\npath = "../log.mcap"\nloop = true\n')
    with pytest.raises(ConfigError, match="unknown field `loop`"):
        load_rig(bad)


def test_foreign_bag_replays_with_a_mapping(tmp_path):
    from mcap_ros2.writer import Writer

    joint_def = (
        "std_msgs/Header header\nstring[] name\nfloat64[] position\nfloat64[] velocity\n"
        "float64[] effort\n" + "=" * 80 + "\nMSG: std_msgs/Header\n"
        "builtin_interfaces/Time stamp\nstring frame_id\n"
    )
    path = tmp_path / "other.mcap"
    with open(path, "wb") as f, Writer(f) as w:
        schema = w.register_msgdef("sensor_msgs/msg/JointState", joint_def)
        for i in range(10):
            t = T0 + i * 10_000_000
            w.write_message(
                "/joint_states",
                schema,
                {
                    "header": {"stamp": {"sec": t // 10**9, "nanosec": t % 10**9}},
                    "name": ["a", "b"],
                    "position": [0.5 * i, -0.25 * i],
                },
                log_time=t + 1000,
            )
    with pytest.raises(ConfigError, match="topic -> stream mapping"):
        Replay.from_file(path)
    with Replay.from_file(path, {"/joint_states": "joints"}, mode="manual") as rp:
        (spec,) = rp.specs
        assert (spec.modality, spec.shape, spec.dtype, spec.policy) == (
            "joints",
            (2,),
            "float32",
            "interp",
        )
        assert spec.rate_hz == pytest.approx(100.0)
        rp.advance_to(2**62)
        times, values = rp.buffers["joints"].window(0, 2**62)
    np.testing.assert_array_equal(times, T0 + 10_000_000 * np.arange(10))
    np.testing.assert_array_equal(values[:, 0], 0.5 * np.arange(10))
    np.testing.assert_array_equal(values[:, 1], -0.25 * np.arange(10))


def test_truncated_log_replays_what_was_recovered(tmp_path):
    path = tmp_path / "log.mcap"
    spec = StreamSpec("ft", "force", (6,), "float32", 500.0)
    buf = StreamBuffer(spec, capacity=3000)
    with Recorder(path, [buf], chunk_size=8192) as rec:
        for i in range(2000):
            buf.push(T0 + i * 2_000_000, np.full(6, i, np.float32))
        rec.poll()
    data = path.read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    with Replay.from_file(cut, mode="fast") as rp:
        assert not rp.info.complete
        assert rp.wait_done(5)
        times, values = rp.buffers["ft"].window(0, 2**62)
    n = rp.info.message_count
    assert 0 < n < 2000 and len(times) == n
    np.testing.assert_array_equal(values[:, 0], np.arange(n, dtype=np.float32))


def test_recording_a_replay_reproduces_the_log(tmp_path, log):
    """Replay -> Recorder -> identical stamps and values: logs can be re-cut losslessly."""
    path, ref = log
    out = tmp_path / "again.mcap"
    rp = Replay.from_file(path, mode="fast")
    rec = Recorder(out, [rp], poll_interval_s=0.001)
    rec.open()
    with rp:
        rec.start()
        assert rp.wait_done(5)
    stats = rec.close()
    assert stats.dropped == 0
    again = read_recording(out)
    for name, (times, values) in ref.items():
        np.testing.assert_array_equal(again.times[name], times)
        np.testing.assert_array_equal(again.values[name], values)


# --------------------------------------------------------------------------- CLI


def run_cli(argv: list[str]) -> int:
    """``mmrobot ARGV`` in-process, through the project's CLI entry point."""
    from mmrobot import cli

    return cli.main(argv)


def test_cli_replay_info_and_fast(tmp_path, log, capsys):
    path, ref = log
    assert run_cli(["replay", str(path), "--info"]) == 0
    out = capsys.readouterr().out
    assert "complete MCAP, 74 messages on 3 topics" in out
    assert "/ft" in out and "geometry_msgs/msg/WrenchStamped" in out and "50" in out
    assert run_cli(["replay", str(path), "--fast"]) == 0
    out = capsys.readouterr().out
    assert "replayed 74 samples" in out
    row = next(line for line in out.splitlines() if line.startswith("ft "))
    assert " 50 " in row and "500.0" in row  # 50 samples at 2 ms


def test_cli_recover_and_errors(tmp_path, capsys):
    path = tmp_path / "log.mcap"
    make_log(path, n_ft=3000, chunk_size=16 * 1024)
    data = path.read_bytes()
    with open(path, "rb") as f:
        chunks = make_reader(f).get_summary().chunk_indexes
    last = max(chunks, key=lambda c: c.chunk_start_offset)
    assert len(chunks) > 2
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: last.chunk_start_offset + last.chunk_length // 2])  # mid-chunk
    with open(path, "rb") as f:  # messages per chunk, in file order, from mcap's own reader
        per_chunk = [
            sum(isinstance(r, Message) for r in breakup_chunk(c))
            for c in StreamReader(f, emit_chunks=True).records
            if isinstance(c, Chunk)
        ]
    out = tmp_path / "fixed.mcap"
    assert run_cli(["replay", str(cut), "--recover", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "incomplete MCAP" in printed and "Recovered" in printed
    with open(out, "rb") as f:
        summary = make_reader(f).get_summary()
    # exactly the messages of the chunks before the cut one survive
    assert summary.statistics.message_count == sum(per_chunk[:-1]) > 0
    assert read_recording(out).info.complete
    # bad input: exit code 2 and a message naming the problem
    assert run_cli(["replay", str(tmp_path / "none.mcap"), "--info"]) == 2
    assert "none.mcap does not exist" in capsys.readouterr().err
    assert run_cli(["replay", str(path), "--map", "/nope=x"]) == 2
    err = capsys.readouterr().err
    assert "'/nope' is not in" in err and "/joints" in err
    assert run_cli(["replay", str(path), "--map", "nonsense"]) == 2
    assert "TOPIC=STREAM" in capsys.readouterr().err


def test_cli_record_bad_rig(tmp_path, capsys):
    argv = [
        "record",
        str(tmp_path / "no.toml"),
        "--duration",
        "1",
        "--out",
        str(tmp_path / "x.mcap"),
    ]
    assert run_cli(argv) == 2
    assert "no.toml" in capsys.readouterr().err
    rig = tmp_path / "rig.toml"
    rig.write_text('[[driver]]\nkind = "ft300"\nname = "ft"\nport = "/dev/x"\n')
    assert run_cli(["record", str(rig), "--duration", "0", "--out", str(tmp_path / "x.mcap")]) == 2
    assert "--duration must be > 0" in capsys.readouterr().err
    # an absent device: runtime failure naming the port, and no half-made file
    out = tmp_path / "absent.mcap"
    assert run_cli(["record", str(rig), "--duration", "0.1", "--out", str(out)]) == 1
    assert "/dev/x" in capsys.readouterr().err
    assert not out.exists()


def test_concurrent_manual_steps_do_not_duplicate(log):
    path, ref = log
    total = sum(len(t) for t, _ in ref.values())
    with Replay.from_file(path, mode="manual") as rp:
        counts = []

        def worker():
            k = 0
            while rp.step() is not None:
                k += 1
            counts.append(k)

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sum(counts) == total and rp.played == total
