"""Recorder -> MCAP -> read back: values, stamps, specs, ROS 2 conformance, drops, cut-off files.

Every file here is a real MCAP written by the recorder. Read-back equality is checked twice:
through mcap's own reader with mcap-ros2-support's decoder (the ROS 2 message fields, as
`ros2 bag` or Foxglove see them) and through our reader (values rebuilt to the stream spec).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory

from mmrobot.core import ConfigError, StreamSpec
from mmrobot.drivers.recording import (
    METADATA_STATS,
    METADATA_STREAMS,
    Recorder,
    inspect_recording,
    read_recording,
    recover_recording,
)
from mmrobot.sync import StreamBuffer

T0 = 1_700_000_000_123_456_789  # stamps with a sub-second part, to test sec/nanosec splits

# name, spec, expected ROS 2 type
SPECS = [
    (StreamSpec("scene_cam", "camera", (96, 96, 3), "uint8", 30.0), "sensor_msgs/msg/Image"),
    (StreamSpec("rgba_cam", "camera", (8, 10, 4), "uint8", 30.0), "sensor_msgs/msg/Image"),
    (StreamSpec("mono_cam", "camera", (12, 16), "uint8", 30.0), "sensor_msgs/msg/Image"),
    (StreamSpec("depth16", "depth", (12, 16), "uint16", 30.0), "sensor_msgs/msg/Image"),
    (StreamSpec("depth32", "depth", (12, 16), "float32", 30.0), "sensor_msgs/msg/Image"),
    (StreamSpec("lidar", "lidar", (360, 3), "float32", 10.0), "sensor_msgs/msg/PointCloud2"),
    (StreamSpec("lidar64", "lidar", (50, 3), "float64", 10.0), "sensor_msgs/msg/PointCloud2"),
    (StreamSpec("scan", "lidar", (360,), "float32", 10.0), "sensor_msgs/msg/LaserScan"),
    (
        StreamSpec("ft", "force", (6,), "float32", 500.0, policy="interp", history=10),
        "geometry_msgs/msg/WrenchStamped",
    ),
    (
        StreamSpec("joints", "joints", (7,), "float32", 200.0, policy="interp", latency_ns=3000),
        "sensor_msgs/msg/JointState",
    ),
    (StreamSpec("grip", "gripper", (1,), "float32", 50.0), "sensor_msgs/msg/JointState"),
    (StreamSpec("misc_i16", "other", (2, 3), "int16", 10.0), "std_msgs/msg/Int16MultiArray"),
    (StreamSpec("misc_u8", "other", (4,), "uint8", 10.0), "std_msgs/msg/UInt8MultiArray"),
    (StreamSpec("misc_f64", "other", (3,), "float64", 10.0), "std_msgs/msg/Float64MultiArray"),
    (StreamSpec("misc_i64", "other", (2,), "int64", 10.0), "std_msgs/msg/Int64MultiArray"),
    (StreamSpec("force3", "force", (3,), "float32", 10.0), "std_msgs/msg/Float32MultiArray"),
]


def random_value(spec: StreamSpec, rng: np.random.Generator) -> np.ndarray:
    dt = np.dtype(spec.dtype)
    if dt.kind == "f":
        return (rng.standard_normal(spec.shape) * 10).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=spec.shape, dtype=dt, endpoint=True)


def fill(specs, n, rng, period_ns=7_000_000):
    """Buffers with n samples each at distinct stamps; returns buffers and the reference."""
    bufs = [StreamBuffer(s, capacity=4 * n) for s in specs]
    ref = {}
    for k, b in enumerate(bufs):
        times = [T0 + i * period_ns + 13 * k for i in range(n)]
        values = [random_value(b.spec, rng) for _ in range(n)]
        ref[b.spec.name] = (np.array(times, dtype=np.int64), np.stack(values))
    return bufs, ref


def push_all(bufs, ref):
    for b in bufs:
        times, values = ref[b.spec.name]
        for t, v in zip(times, values):
            assert b.push(int(t), v)


def mcap_messages(path):
    """(topic, schema name, log_time, publish_time, decoded msg) via mcap + mcap_ros2 only."""
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        return [
            (ch.topic, schema.name, m.log_time, m.publish_time, msg)
            for schema, ch, m, msg in reader.iter_decoded_messages(log_time_order=True)
        ]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_every_message_type_reads_back_exactly(tmp_path, rng):
    specs = [s for s, _ in SPECS]
    bufs, ref = fill(specs, 6, rng)
    path = tmp_path / "all.mcap"
    with Recorder(path, bufs, joint_names={"joints": [f"j{i}" for i in range(7)]}) as rec:
        push_all(bufs, ref)
        assert rec.poll() == 6 * len(specs)
    # Our reader: exact specs, exact stamps, exact values, for every type.
    r = read_recording(path)
    assert r.info.complete and r.info.message_count == 6 * len(specs)
    for spec, _ in SPECS:
        times, values = ref[spec.name]
        assert r.specs[spec.name] == spec
        np.testing.assert_array_equal(r.times[spec.name], times)
        assert r.values[spec.name].dtype == np.dtype(spec.dtype)
        np.testing.assert_array_equal(r.values[spec.name], values)
    # The stamps and types seen by any ROS 2 tool.
    msgs = mcap_messages(path)
    types = {topic: schema for topic, schema, *_ in msgs}
    for spec, ros_type in SPECS:
        assert types[f"/{spec.name}"] == ros_type
    by_topic: dict[str, list] = {}
    for topic, _, log_time, publish_time, msg in msgs:
        by_topic.setdefault(topic, []).append((log_time, publish_time, msg))
    for spec, ros_type in SPECS:
        times, values = ref[spec.name]
        got = by_topic[f"/{spec.name}"]
        assert [g[0] for g in got] == times.tolist()
        assert [g[1] for g in got] == times.tolist()
        for (_, _, msg), t, v in zip(got, times, values):
            if hasattr(msg, "header"):
                assert msg.header.stamp.sec == t // 10**9
                assert msg.header.stamp.nanosec == t % 10**9
                assert msg.header.frame_id == spec.name
            check_ros_fields(spec, ros_type, msg, v)


def check_ros_fields(spec, ros_type, msg, v):
    """The value as ROS 2 message fields, read with mcap_ros2 (independent of our decoder)."""
    if ros_type == "sensor_msgs/msg/Image":
        h, w = spec.shape[:2]
        ch = spec.shape[2] if len(spec.shape) == 3 else 1
        assert (msg.height, msg.width) == (h, w)
        assert (
            msg.encoding
            == {
                ("uint8", 3): "rgb8",
                ("uint8", 4): "rgba8",
                ("uint8", 1): "mono8",
                ("uint16", 1): "16UC1",
                ("float32", 1): "32FC1",
            }[(spec.dtype, ch)]
        )
        assert msg.step == w * ch * np.dtype(spec.dtype).itemsize
        assert msg.is_bigendian == 0
        assert bytes(msg.data) == v.astype(np.dtype(spec.dtype).newbyteorder("<")).tobytes()
    elif ros_type == "sensor_msgs/msg/PointCloud2":
        assert (msg.height, msg.width) == (1, spec.shape[0])
        assert [f.name for f in msg.fields] == ["x", "y", "z"]
        size = np.dtype(spec.dtype).itemsize
        assert [f.offset for f in msg.fields] == [0, size, 2 * size]
        assert {f.datatype for f in msg.fields} == {7 if size == 4 else 8}  # FLOAT32 / FLOAT64
        assert msg.point_step == 3 * size and msg.row_step == 3 * size * spec.shape[0]
        pts = np.frombuffer(bytes(msg.data), dtype="<f4" if size == 4 else "<f8").reshape(-1, 3)
        np.testing.assert_array_equal(pts, v)
    elif ros_type == "sensor_msgs/msg/LaserScan":
        np.testing.assert_array_equal(np.asarray(msg.ranges, dtype=np.float32), v)
        assert msg.angle_increment == pytest.approx(2 * np.pi / spec.shape[0], rel=1e-6)
    elif ros_type == "geometry_msgs/msg/WrenchStamped":
        w = msg.wrench
        got = [w.force.x, w.force.y, w.force.z, w.torque.x, w.torque.y, w.torque.z]
        assert got == v.astype(np.float64).tolist()
    elif ros_type == "sensor_msgs/msg/JointState":
        assert list(msg.position) == v.astype(np.float64).tolist()
        if spec.name == "joints":
            assert list(msg.name) == [f"j{i}" for i in range(7)]
        else:
            assert list(msg.name) == [f"{spec.name}_{i}" for i in range(spec.shape[0])]
    else:  # multi-arrays: layout and row-major data
        assert [d.size for d in msg.layout.dim] == list(spec.shape)
        assert msg.layout.dim[0].stride == int(np.prod(spec.shape))
        data = msg.data
        arr = (
            np.frombuffer(data, np.uint8)
            if isinstance(data, (bytes, bytearray))
            else np.asarray(data)
        )
        np.testing.assert_array_equal(arr.reshape(spec.shape), v)


@pytest.mark.parametrize("compression", ["zstd", "lz4"])
def test_file_is_ros2_profile_chunked_and_compressed(tmp_path, rng, compression):
    specs = [SPECS[0][0], SPECS[8][0]]  # camera + force
    bufs, ref = fill(specs, 40, rng)
    ref["scene_cam"] = (ref["scene_cam"][0], ref["scene_cam"][1] // 64)  # compressible images
    path = tmp_path / "c.mcap"
    with Recorder(path, bufs, compression=compression, chunk_size=64 * 1024) as rec:
        push_all(bufs, ref)
        rec.poll()
    with open(path, "rb") as f:
        reader = make_reader(f)
        header = reader.get_header()
        summary = reader.get_summary()
    assert header.profile == "ros2"
    assert summary is not None and summary.statistics.message_count == 80
    assert len(summary.chunk_indexes) > 1  # 40 raw 27 kB images do not fit one 64 kB chunk
    assert summary.statistics.chunk_count == len(summary.chunk_indexes)
    assert {ci.compression for ci in summary.chunk_indexes} == {compression}
    assert sum(ci.compressed_size for ci in summary.chunk_indexes) < sum(
        ci.uncompressed_size for ci in summary.chunk_indexes
    )
    assert {ch.message_encoding for ch in summary.channels.values()} == {"cdr"}
    schemas = {s.name: s for s in summary.schemas.values()}
    assert {s.encoding for s in schemas.values()} == {"ros2msg"}
    text = schemas["sensor_msgs/msg/Image"].data.decode()
    # ROS 2 .msg text with dependencies appended, as rosbag2 writes them
    assert text.startswith("std_msgs/Header header\n")
    assert "\nMSG: std_msgs/Header\n" in text and "\nMSG: builtin_interfaces/Time\n" in text
    wrench = schemas["geometry_msgs/msg/WrenchStamped"].data.decode()
    for dep in ("geometry_msgs/Wrench", "geometry_msgs/Vector3", "std_msgs/Header"):
        assert f"\nMSG: {dep}\n" in wrench


def test_compressed_images_png_exact_jpeg_close(tmp_path, rng):
    spec = StreamSpec("cam", "camera", (48, 64, 3), "uint8", 30.0)
    spec2 = StreamSpec("cam2", "camera", (48, 64, 3), "uint8", 30.0)
    # a smooth image, so JPEG's error is small and meaningful
    yy, xx = np.mgrid[0:48, 0:64]
    img = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.uint8)
    a, b = StreamBuffer(spec), StreamBuffer(spec2)
    path = tmp_path / "img.mcap"
    with Recorder(path, [a, b], image_format={"cam": "png", "cam2": "jpeg"}) as rec:
        a.push(T0, img)
        b.push(T0, img)
        rec.poll()
    msgs = mcap_messages(path)
    assert {m[1] for m in msgs} == {"sensor_msgs/msg/CompressedImage"}
    assert {m[4].format for m in msgs} == {"png", "jpeg"}
    r = read_recording(path)
    np.testing.assert_array_equal(r.values["cam"][0], img)
    err = np.abs(r.values["cam2"][0].astype(int) - img.astype(int))
    assert 0 < err.mean() < 3.0  # lossy but close; channel order kept (RGB)


def test_specs_and_stats_are_in_the_file(tmp_path, rng):
    spec = StreamSpec(
        "ft", "force", (6,), "float32", 500.0, policy="interp", max_age_ns=7, history=4
    )
    buf = StreamBuffer(spec, capacity=8)
    path = tmp_path / "m.mcap"
    rec = Recorder(path, [buf]).open()
    for i in range(20):  # 20 samples into a ring of 8 before the first poll: 12 lost
        buf.push(T0 + i, np.full(6, i, dtype=np.float32))
    rec.poll()
    stats = rec.close()
    assert stats.streams["ft"].written == 8
    assert stats.streams["ft"].dropped == 12
    with open(path, "rb") as f:
        meta = {m.name: m.metadata for m in make_reader(f).iter_metadata()}
    stored = json.loads(meta[METADATA_STREAMS]["ft"])
    assert StreamSpec.from_dict(stored["spec"]) == spec
    assert json.loads(meta[METADATA_STATS]["ft"])["dropped"] == 12
    r = read_recording(path)
    np.testing.assert_array_equal(r.values["ft"][:, 0], np.arange(12, 20, dtype=np.float32))


def test_background_thread_records_everything(tmp_path, rng):
    specs = [SPECS[9][0], SPECS[8][0]]
    bufs = [StreamBuffer(s, capacity=256) for s in specs]
    path = tmp_path / "bg.mcap"
    n = 400

    def producer(buf):
        for i in range(n):
            buf.push(T0 + i * 1000, np.full(buf.spec.shape, i, dtype=np.float32))
            if i % 50 == 0:
                time.sleep(0.002)

    rec = Recorder(path, bufs, poll_interval_s=0.001).start()
    threads = [threading.Thread(target=producer, args=(b,)) for b in bufs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = rec.close()
    r = read_recording(path)
    for b in bufs:
        name = b.spec.name
        assert stats.streams[name].written + stats.streams[name].dropped == n
        # what was written is what was pushed, in order, with the newest sample last; samples
        # are missing only where drops were counted (a slow poll under load can lose the
        # middle of the run when the buffer wraps, not only its start)
        values = r.values[name][:, 0]
        assert len(values) == stats.streams[name].written
        assert np.all(np.diff(values) > 0) and values[-1] == n - 1
        if stats.streams[name].dropped == 0:
            np.testing.assert_array_equal(values, np.arange(n, dtype=np.float32))
        np.testing.assert_array_equal(r.times[name], T0 + 1000 * values.astype(np.int64))


def test_only_samples_after_open_are_recorded(tmp_path):
    spec = StreamSpec("j", "joints", (2,), "float32", 100.0)
    buf = StreamBuffer(spec)
    buf.push(T0, np.zeros(2, np.float32))
    path = tmp_path / "o.mcap"
    with Recorder(path, [buf]) as rec:
        buf.push(T0 + 1, np.ones(2, np.float32))
        rec.poll()
    r = read_recording(path)
    assert r.times["j"].tolist() == [T0 + 1]


def test_driver_joint_names_are_used(tmp_path):
    class FakeDriverShape:  # the Driver attributes the recorder uses: buffers, joint_names
        def __init__(self):
            spec = StreamSpec("arm", "joints", (3,), "float32", 100.0)
            self.buffers = {"arm": StreamBuffer(spec)}
            self.joint_names = ("shoulder", "elbow", "wrist")

    d = FakeDriverShape()
    path = tmp_path / "n.mcap"
    with Recorder(path, [d]) as rec:
        d.buffers["arm"].push(T0, np.array([1, 2, 3], np.float32))
        rec.poll()
    (msg,) = [m[4] for m in mcap_messages(path)]
    assert list(msg.name) == ["shoulder", "elbow", "wrist"]


def test_negative_stamps_are_skipped_and_counted(tmp_path):
    # MCAP log times are unsigned: a sample before the clock's epoch cannot be stored
    buf = StreamBuffer(StreamSpec("j", "joints", (2,), "float32", 100.0))
    path = tmp_path / "neg.mcap"
    with Recorder(path, [buf]) as rec:
        buf.push(-5, np.zeros(2, np.float32))
        buf.push(7, np.ones(2, np.float32))
        rec.poll()
    assert rec.stats.streams["j"].skipped == 1 and rec.stats.streams["j"].written == 1
    assert read_recording(path).times["j"].tolist() == [7]


def test_an_error_in_the_thread_is_raised_by_close(tmp_path):
    class BrokenBuffer(StreamBuffer):  # a real buffer whose reads start failing
        fail = False

        def read_since(self, seq):
            if self.fail:
                raise OSError("disk gone")
            return super().read_since(seq)

    buf = BrokenBuffer(StreamSpec("j", "joints", (2,), "float32", 100.0))
    rec = Recorder(tmp_path / "e.mcap", [buf], poll_interval_s=0.001).start()
    buf.push(1, np.zeros(2, np.float32))
    time.sleep(0.05)
    buf.fail = True
    time.sleep(0.05)
    buf.fail = False
    with pytest.raises(OSError, match="disk gone"):
        rec.close()
    # what was written before the error is in a complete file
    assert read_recording(tmp_path / "e.mcap").times["j"].tolist() == [1]


# --------------------------------------------------------------------------- cut-off files


def _record_counter(path, n, chunk_size=4096):
    """n joint samples (value i, stamp T0 + i ms) with small chunks; returns the full file bytes."""
    spec = StreamSpec("joints", "joints", (7,), "float32", 1000.0)
    buf = StreamBuffer(spec, capacity=n + 1)
    with Recorder(path, [buf], chunk_size=chunk_size) as rec:
        for i in range(n):
            buf.push(T0 + i * 1_000_000, np.full(7, i, dtype=np.float32))
        rec.poll()
    return Path(path).read_bytes()


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.95])
def test_truncated_file_reads_up_to_last_complete_chunk(tmp_path, fraction):
    full = tmp_path / "full.mcap"
    data = _record_counter(full, 2000)
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: int(len(data) * fraction)])
    # chunk boundaries from the complete file: how many messages lie in chunks ending before the cut
    with open(full, "rb") as f:
        summary = make_reader(f).get_summary()
    expected = 0
    for ci in summary.chunk_indexes:
        if ci.chunk_start_offset + ci.chunk_length <= len(data) * fraction:
            expected += (ci.message_end_time - ci.message_start_time) // 1_000_000 + 1
    assert expected > 0
    r = read_recording(cut)
    assert not r.info.complete
    assert r.info.message_count == expected
    n = len(r.times["joints"])
    assert n == expected
    np.testing.assert_array_equal(r.values["joints"][:, 3], np.arange(n, dtype=np.float32))
    np.testing.assert_array_equal(r.times["joints"], T0 + 1_000_000 * np.arange(n))
    assert r.specs["joints"].rate_hz == 1000.0  # spec metadata precedes the first chunk
    msg = r.info.describe()
    assert f"Recovered {n} messages" in msg and str(len(data[: int(len(data) * fraction)])) in msg
    # recovery writes a complete, indexed file with the same messages
    out = tmp_path / "recovered.mcap"
    info = recover_recording(cut, out)
    assert info.message_count == n
    again = read_recording(out)
    assert again.info.complete
    np.testing.assert_array_equal(again.values["joints"], r.values["joints"])
    with open(out, "rb") as f:
        assert make_reader(f).get_summary().statistics.message_count == n


def test_file_cut_inside_the_header_area_has_no_messages(tmp_path):
    data = _record_counter(tmp_path / "f.mcap", 100)
    cut = tmp_path / "tiny.mcap"
    cut.write_bytes(data[:40])
    info = inspect_recording(cut)
    assert not info.complete and info.message_count == 0
    assert "Recovered 0 messages" in info.describe()


_KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from mmrobot.core import StreamSpec
    from mmrobot.sync import StreamBuffer
    from mmrobot.drivers.recording import Recorder

    spec = StreamSpec("joints", "joints", (7,), "float32", 200.0)
    buf = StreamBuffer(spec, capacity=4096)
    rec = Recorder(sys.argv[1], [buf], flush_interval_s=0.05, poll_interval_s=0.005).start()
    i = 0
    while True:
        buf.push(1_000_000_000 + i * 5_000_000, np.full(7, i, dtype=np.float32))
        i += 1
        if i % 20 == 0:
            rec.poll()
            rec.flush()
            print(i, flush=True)  # everything before i is on disk now
        time.sleep(0.001)
    """
)


def test_recorder_killed_with_sigkill_leaves_a_readable_file(tmp_path):
    path = tmp_path / "killed.mcap"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        flushed = 0
        deadline = time.monotonic() + 20
        while flushed < 100 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            flushed = int(line)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert flushed >= 100, proc.stderr.read()
    r = read_recording(path)
    assert not r.info.complete
    n = len(r.times["joints"])
    assert n >= flushed  # everything flushed before the kill survived
    np.testing.assert_array_equal(r.values["joints"][:, 0], np.arange(n, dtype=np.float32))
    np.testing.assert_array_equal(r.times["joints"], 1_000_000_000 + 5_000_000 * np.arange(n))


# --------------------------------------------------------------------------- bad input


def test_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mcap"):
        read_recording(tmp_path / "nope.mcap")


def test_non_mcap_file_is_a_clear_error(tmp_path):
    p = tmp_path / "notes.mcap"
    p.write_text("hello, not a log\n")
    with pytest.raises(ConfigError, match=r"notes\.mcap is not an MCAP file"):
        inspect_recording(p)


def test_unknown_topic_lists_the_valid_ones(tmp_path, rng):
    bufs, ref = fill([SPECS[8][0]], 2, rng)
    path = tmp_path / "t.mcap"
    with Recorder(path, bufs) as rec:
        push_all(bufs, ref)
        rec.poll()
    with pytest.raises(
        ConfigError, match=r"'/wrist_cam' is not in .*/ft \(geometry_msgs/msg/WrenchStamped\)"
    ):
        read_recording(path, {"/wrist_cam": "cam"})


def test_recorder_rejects_bad_options(tmp_path):
    a = StreamBuffer(StreamSpec("a", "joints", (2,), "float32", 10.0))
    with pytest.raises(ConfigError, match="compression 'gzip'"):
        Recorder(tmp_path / "x.mcap", [a], compression="gzip")
    with pytest.raises(ConfigError, match="more than once"):
        Recorder(tmp_path / "x.mcap", [a, StreamBuffer(a.spec)])
    with pytest.raises(ConfigError, match=r"unknown stream\(s\) \['b'\]"):
        Recorder(tmp_path / "x.mcap", [a], joint_names={"b": ["x"]})
    with pytest.raises(ConfigError, match="2 joints"):
        Recorder(tmp_path / "x.mcap", [a], joint_names={"a": ["x"]})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Recorder(tmp_path / "no" / "dir" / "x.mcap", [a]).open()


# --------------------------------------------------------------------------- foreign bags


def _foreign_bag(path):
    """A bag as another ROS 2 recorder writes it: msg text with comments, bgr8 images, no mmrobot metadata."""
    from mcap_ros2.writer import Writer

    header = "builtin_interfaces/Time stamp # time\nstring frame_id\n"
    time_def = "int32 sec\nuint32 nanosec\n"
    sep = "=" * 80
    image_def = (
        "# raw image\nstd_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\n"
        f"uint8 is_bigendian\nuint32 step\nuint8[] data\n{sep}\nMSG: std_msgs/Header\n{header}"
        f"{sep}\nMSG: builtin_interfaces/Time\n{time_def}"
    )
    scan_def = (
        "std_msgs/Header header\nfloat32 angle_min\nfloat32 angle_max\nfloat32 angle_increment\n"
        "float32 time_increment\nfloat32 scan_time\nfloat32 range_min\nfloat32 range_max\n"
        f"float32[] ranges\nfloat32[] intensities\n{sep}\nMSG: std_msgs/Header\n{header}"
        f"{sep}\nMSG: builtin_interfaces/Time\n{time_def}"
    )
    img = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)  # in RGB
    ranges = np.array([1.0, 2.0, 0.05, np.inf], dtype=np.float32)
    with open(path, "wb") as f, Writer(f) as w:
        s_img = w.register_msgdef("sensor_msgs/msg/Image", image_def)
        s_scan = w.register_msgdef("sensor_msgs/msg/LaserScan", scan_def)
        for i in range(5):
            t = T0 + i * 100_000_000
            stamp = {"sec": t // 10**9, "nanosec": t % 10**9}
            bgr = img[:, :, ::-1] + i
            w.write_message(
                "/camera/image_raw",
                s_img,
                {
                    "header": {"stamp": stamp, "frame_id": "cam"},
                    "height": 4,
                    "width": 5,
                    "encoding": "bgr8",
                    "is_bigendian": 0,
                    "step": 15,
                    "data": np.ascontiguousarray(bgr).tobytes(),
                },
                log_time=t + 5000,  # received later than stamped
            )
            w.write_message(
                "/scan",
                s_scan,
                {
                    "header": {"stamp": stamp, "frame_id": "laser"},
                    "angle_min": 0.0,
                    "angle_max": 3 * np.pi / 2,
                    "angle_increment": np.pi / 2,
                    "range_min": 0.1,
                    "range_max": 10.0,
                    "ranges": ranges.tolist(),
                    "intensities": [],
                },
                log_time=t + 7000,
            )
    return img, ranges


def test_foreign_bag_needs_a_mapping_and_reads_with_one(tmp_path):
    path = tmp_path / "foreign.mcap"
    img, ranges = _foreign_bag(path)
    with pytest.raises(ConfigError, match=r"topic -> stream mapping.*/camera/image_raw"):
        read_recording(path)
    r = read_recording(path, {"/camera/image_raw": "scene_cam", "/scan": "lidar"})
    cam, lidar = r.specs["scene_cam"], r.specs["lidar"]
    assert (cam.modality, cam.shape, cam.dtype) == ("camera", (4, 5, 3), "uint8")
    assert cam.rate_hz == pytest.approx(10.0, rel=1e-3)  # mean rate from log times
    assert (lidar.modality, lidar.shape) == ("lidar", (4, 3))
    # header stamps, not the later log times
    np.testing.assert_array_equal(r.times["scene_cam"], T0 + 100_000_000 * np.arange(5))
    for i in range(5):
        np.testing.assert_array_equal(r.values["scene_cam"][i], img + i)  # bgr8 -> our rgb
    # ranges at 0, 90, 180, 270 degrees; 0.05 is below range_min and inf above range_max: no return
    expected = np.array([[1, 0, 0], [0, 2, 0], [0, 0, 0], [0, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(r.values["lidar"][0], expected, atol=1e-6)
    # an explicit spec for a 1-D scan keeps the raw ranges
    spec = StreamSpec("ranges", "lidar", (4,), "float32", 10.0)
    r2 = read_recording(path, {"/scan": spec})
    np.testing.assert_array_equal(r2.values["ranges"][0], ranges)


# --------------------------------------------------------------------------- drivers end to end


def run_cli(argv: list[str]) -> int:
    """``mmrobot ARGV`` in-process, through the project's CLI entry point."""
    from mmrobot import cli

    return cli.main(argv)


ARM = [(i, "XM430-W350") for i in range(1, 8)]
FT_WRENCH = (1.5, -2.25, 10.0, 0.05, -0.02, 0.3)


def _servo_entries():
    out = [{"id": i, "model": "XM430-W350", "joint": f"j{i}"} for i in range(1, 7)]
    out.append({"id": 7, "model": "XM430-W350", "joint": "gripper", "unit": "m", "m_per_rad": 0.01})
    return out


def _emulated_rig_entries(ft_port: str, dxl_port: str) -> list[dict]:
    return [
        {"kind": "ft300", "name": "wrist_ft", "port": ft_port},
        {"kind": "dynamixel", "name": "arm", "port": dxl_port, "servos": _servo_entries()},
    ]


def _set_servo_ticks(emu) -> np.ndarray:
    """Hold the emulated servos at distinct positions (torque off: they stay); returns ticks."""
    ticks = np.array([2048 + 150 * (i - 3) for i in range(7)], dtype=np.float64)
    for i, servo in enumerate(emu.servos.values()):
        servo.position = float(ticks[i])
    return ticks


def _video(path, n_frames=30, size=(64, 48)):
    """An MJPG file whose frame i has brightness 8 * i (so frames differ)."""
    cv2 = pytest.importorskip("cv2")
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, size)
    for i in range(n_frames):
        writer.write(np.full((size[1], size[0], 3), 8 * i, np.uint8))
    writer.release()
    return path


def test_emulated_drivers_record_exactly_what_they_pushed(tmp_path):
    """Every driver kind against its emulator (FT 300, Dynamixel arm, LD06 and RPLIDAR on ptys;
    a camera on a video file) -> Recorder -> the file equals the drivers' buffers."""
    from mmrobot.drivers import parse_rig
    from mmrobot.drivers.emulators import (
        DynamixelEmulator,
        FT300Emulator,
        LD06Emulator,
        Room,
        RplidarEmulator,
    )

    path = tmp_path / "rig.mcap"
    with (
        FT300Emulator(FT_WRENCH, noise_force_n=0.05, link=tmp_path / "ft", seed=3) as ft_emu,
        DynamixelEmulator(ARM, link=tmp_path / "dxl", position_noise_ticks=3.0, seed=4) as dxl_emu,
        LD06Emulator(Room(), link=tmp_path / "ld06") as lidar_emu,
        RplidarEmulator(Room(), link=tmp_path / "rplidar") as rplidar_emu,
    ):
        entries = _emulated_rig_entries(ft_emu.port, dxl_emu.port)
        entries.append({"kind": "ld06", "name": "base_lidar", "port": lidar_emu.port})
        entries.append(
            {
                "kind": "rplidar",
                "name": "top_lidar",
                "port": rplidar_emu.port,
                "stream": {"name": "lidar2"},
            }
        )
        entries.append({"kind": "camera", "name": "cam", "device": str(_video(tmp_path / "v.avi"))})
        drivers = parse_rig({"driver": entries}, "rig.toml").build_drivers()
        rec = Recorder(path, drivers, poll_interval_s=0.01).start()  # before the drivers open
        # the lidars turn at 10 Hz; the camera file plays at 30 fps
        want = {"ft300": 40, "dynamixel": 40, "ld06": 3, "rplidar": 3, "camera": 10}
        try:
            for d in drivers:
                d.open()
            for d in drivers:
                assert d.wait_for_samples(want[d.kind], timeout_s=10), d.stats
        finally:
            for d in drivers:
                d.close()
        stats = rec.close()
    r = read_recording(path)
    assert r.info.complete
    assert set(r.specs) == {s.name for d in drivers for s in d.specs}
    for d in drivers:
        for name, buf in d.buffers.items():
            times, values = buf.window(-(2**62), 2**62)
            assert len(times) >= want[d.kind] and stats.streams[name].dropped == 0
            assert r.specs[name] == buf.spec
            np.testing.assert_array_equal(r.times[name], times)
            np.testing.assert_array_equal(r.values[name], values)
    for lidar in ("lidar", "lidar2"):  # real returns
        assert np.count_nonzero(np.any(r.values[lidar] != 0, axis=2)) > 300, lidar
    assert len(np.unique(r.values["scene_cam"].reshape(len(r.values["scene_cam"]), -1).mean(1))) > 3
    types = {m[0]: m[1] for m in mcap_messages(path)}
    assert types["/lidar"] == types["/lidar2"] == "sensor_msgs/msg/PointCloud2"
    assert types["/scene_cam"] == "sensor_msgs/msg/Image"
    (joint_msg, *_) = [m[4] for m in mcap_messages(path) if m[0] == "/joints"]
    assert list(joint_msg.name) == ["j1", "j2", "j3", "j4", "j5", "j6", "gripper"]


def test_mmrobot_record_cli_on_emulated_rig(tmp_path, capsys):
    from mmrobot.drivers.dynamixel import ServoConfig, ServoConversion
    from mmrobot.drivers.emulators import DynamixelEmulator, FT300Emulator
    from mmrobot.drivers.protocols.ft300 import FrameDecoder, encode_frame

    out = tmp_path / "cli.mcap"
    with (
        FT300Emulator(FT_WRENCH, link=tmp_path / "ft") as ft_emu,
        DynamixelEmulator(ARM, link=tmp_path / "dxl") as dxl_emu,
    ):
        ticks = _set_servo_ticks(dxl_emu)
        rig = tmp_path / "rig.toml"
        lines = []
        for e in _emulated_rig_entries(ft_emu.port, dxl_emu.port):
            lines.append("[[driver]]")
            for k, v in e.items():
                if k != "servos":
                    lines.append(f"{k} = {json.dumps(v)}")
            for s in e.get("servos", []):
                lines.append("[[driver.servos]]")
                lines.extend(f"{k} = {json.dumps(v)}" for k, v in s.items())
        rig.write_text("\n".join(lines) + "\n")
        rc = run_cli(["record", str(rig), "--duration", "0.6", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "/ft" in printed and "/joints" in printed
    # read back with mcap + mcap-ros2-support only: the values the devices sent
    msgs = mcap_messages(out)
    wrenches = [m[4].wrench for m in msgs if m[0] == "/ft"]
    joints = [m[4] for m in msgs if m[0] == "/joints"]
    assert len(wrenches) >= 20 and len(joints) >= 20
    (sent,) = FrameDecoder().feed(encode_frame(np.array(FT_WRENCH)))  # the wire's quantization
    expected_ft = np.asarray(sent, dtype=np.float32).astype(np.float64).tolist()
    for w in wrenches:
        assert [w.force.x, w.force.y, w.force.z, w.torque.x, w.torque.y, w.torque.z] == expected_ft
    conv = ServoConversion([ServoConfig(**s) for s in _servo_entries()])
    expected_q = conv.to_joint(ticks).astype(np.float32).astype(np.float64).tolist()
    assert expected_q[0] != expected_q[1]
    for j in joints:
        assert list(j.position) == expected_q
        assert list(j.name)[-1] == "gripper"
    stamps = [m[2] for m in msgs if m[0] == "/joints"]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


# --------------------------------------------------------------------------- an independent ROS 2 peer


def test_rosbags_reads_the_file_with_the_real_ros2_message_definitions(tmp_path, rng):
    """rosbags (a pure-Python rosbag2 implementation with the ROS 2 Humble message definitions
    built in, not ours) opens the file as a rosbag2 MCAP bag and decodes every message to the
    recorded values: our CDR byte layout is the one ROS 2 nodes and `ros2 bag` use."""
    pytest.importorskip("rosbags", reason="independent peer check: pip install rosbags")
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    typestore = get_typestore(Stores.ROS2_HUMBLE)
    specs = [s for s, _ in SPECS]
    bufs, ref = fill(specs, 3, rng)
    path = tmp_path / "peer.mcap"
    with Recorder(path, bufs) as rec:
        push_all(bufs, ref)
        rec.poll()
    seen: dict[str, int] = {}
    with Reader(path) as bag:
        assert {c.topic: c.msgtype for c in bag.connections} == {f"/{s.name}": t for s, t in SPECS}
        by_name = {s.name: s for s in specs}
        for conn, t_ns, raw in bag.messages():
            name = conn.topic[1:]
            spec, i = by_name[name], seen.get(name, 0)
            seen[name] = i + 1
            msg = typestore.deserialize_cdr(raw, conn.msgtype)
            t, v = int(ref[name][0][i]), ref[name][1][i]
            assert t_ns == t
            if hasattr(msg, "header"):
                assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t
            kind = conn.msgtype.split("/")[-1]
            if kind == "Image":
                assert msg.data.tobytes() == v.astype(v.dtype.newbyteorder("<")).tobytes()
            elif kind == "PointCloud2":
                dt = "<f4" if spec.dtype == "float32" else "<f8"
                np.testing.assert_array_equal(msg.data.view(dt).reshape(-1, 3), v)
            elif kind == "LaserScan":
                np.testing.assert_array_equal(msg.ranges, v)
            elif kind == "WrenchStamped":
                f, tq = msg.wrench.force, msg.wrench.torque
                assert [f.x, f.y, f.z, tq.x, tq.y, tq.z] == v.astype(np.float64).tolist()
            elif kind == "JointState":
                np.testing.assert_array_equal(msg.position, v.astype(np.float64))
            else:
                np.testing.assert_array_equal(np.asarray(msg.data).reshape(spec.shape), v)
    assert seen == {s.name: 3 for s in specs}
