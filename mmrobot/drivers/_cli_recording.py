"""``mmrobot record`` and ``mmrobot replay``: record a rig to MCAP, inspect, recover and replay it.

Registered by :mod:`mmrobot.drivers._cli` through :func:`register`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from mmrobot.core.errors import ConfigError

if TYPE_CHECKING:
    from mmrobot.drivers.base import DriverStats
    from mmrobot.drivers.recording import Recorder, RecorderStats, RecordingInfo

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``record`` and ``replay`` subcommands."""
    rec = subparsers.add_parser(
        "record",
        help="record every stream of a rig to an MCAP file of ROS 2 messages",
        description="Open every driver of RIG, record all their streams for --duration seconds "
        "into an MCAP file (ROS 2 messages, chunked and compressed) that `ros2 bag` and "
        "Foxglove open, and print what was recorded.",
    )
    rec.add_argument("rig", help="rig file (drivers/*.toml)")
    rec.add_argument("--duration", type=float, required=True, metavar="S", help="seconds to record")
    rec.add_argument("--out", required=True, metavar="FILE.mcap", help="output file (overwritten)")
    rec.add_argument("--compression", choices=("zstd", "lz4", "none"), default="zstd")
    rec.add_argument(
        "--image-format",
        choices=("raw", "png", "jpeg"),
        default="raw",
        help="camera streams as sensor_msgs/Image (raw, exact) or CompressedImage (png lossless, "
        "jpeg lossy)",
    )
    rec.add_argument("--chunk-size", type=int, default=1 << 20, metavar="BYTES")
    rec.add_argument(
        "--flush-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="finish a chunk and flush the file this often: a killed recorder loses at most this",
    )
    rec.add_argument(
        "--driver",
        action="append",
        default=None,
        metavar="NAME",
        help="record only this driver of the rig (repeatable)",
    )
    rec.set_defaults(func=_record)

    rep = subparsers.add_parser(
        "replay",
        help="play an MCAP recording back into stream buffers; inspect or recover it",
        description="Play FILE.mcap (ours, or a ROS 2 bag in MCAP given --map) through the "
        "replay driver and print per-stream counts; --info only describes the file (and "
        "checks every chunk's CRC); --recover writes a complete copy of a file cut off "
        "mid-write, leaving out corrupted chunks. A corrupted chunk is reported with its "
        "topics and time range and skipped, never replayed.",
    )
    rep.add_argument("file", help="an .mcap file")
    rep.add_argument(
        "--map",
        action="append",
        default=None,
        metavar="TOPIC=STREAM",
        help="replay TOPIC as stream STREAM (repeatable; required for bags recorded elsewhere)",
    )
    speed = rep.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, default=1.0, help="real-time factor (default 1.0)")
    speed.add_argument("--fast", action="store_true", help="as fast as possible")
    rep.add_argument("--info", action="store_true", help="describe the file and exit")
    rep.add_argument("--recover", metavar="OUT.mcap", help="write a complete copy and exit")
    rep.set_defaults(func=_replay)


# --------------------------------------------------------------------------- record


def _record(args: argparse.Namespace) -> int:
    import mmrobot.drivers.replay  # noqa: F401  (registers kind "replay": a rig may re-record a log)
    from mmrobot.drivers.recording import Recorder
    from mmrobot.drivers.rig import load_rig

    if not args.duration > 0:
        raise ConfigError(f"--duration must be > 0 seconds, got {args.duration}")
    rig = load_rig(args.rig)
    drivers = rig.build_drivers(names=args.driver)
    if not drivers:
        raise ConfigError(f"{args.rig}: the rig has no drivers to record")
    opened = []
    try:
        for d in drivers:
            d.open()
            opened.append(d)
        recorder = Recorder(
            args.out,
            drivers,
            compression=args.compression,
            chunk_size=args.chunk_size,
            image_format=args.image_format,
            flush_interval_s=args.flush_interval,
        )
        print(
            f"recording {sum(len(d.specs) for d in drivers)} streams of {len(drivers)} driver(s) "
            f"from {args.rig} for {args.duration:g} s to {args.out}",
            file=sys.stderr,
        )
        recorder.start()
        interrupted = False
        try:
            time.sleep(args.duration)
        except KeyboardInterrupt:
            interrupted = True  # still finish the file properly
        stats = recorder.close()
        health = {s.name: (d.health.value, d.stats) for d in drivers for s in d.specs}
    finally:
        for d in opened:
            d.close()
    _print_record_table(recorder, stats, health, args.out)
    if interrupted:
        print("interrupted: the file was finished and is complete", file=sys.stderr)
    if stats.written == 0:
        print(
            "error: no samples were recorded; check that the devices are connected and streaming",
            file=sys.stderr,
        )
        return 1
    return 0


def _print_record_table(
    recorder: Recorder,
    stats: RecorderStats,
    health: Mapping[str, tuple[str, DriverStats]],
    out: str,
) -> None:
    rows = []
    for info in recorder.topics:
        st = stats.streams[info.stream]
        span = (
            (st.last_t_ns - st.first_t_ns) / 1e9
            if st.first_t_ns is not None and st.last_t_ns is not None
            else 0.0
        )
        rate = (st.written - 1) / span if st.written > 1 and span > 0 else 0.0
        h, ds = health.get(info.stream, ("?", None))
        errs = "" if ds is None else f"{ds.checksum_errors}/{ds.timeouts}/{ds.errors}"
        rows.append(
            (
                info.stream,
                info.topic,
                info.message_type,
                str(st.written),
                f"{rate:.1f}",
                str(st.dropped),
                h,
                errs,
            )
        )
    header = ("stream", "topic", "type", "messages", "rate_hz", "dropped", "health", "crc/tmo/err")
    _table(header, rows)
    print(
        f"wrote {out}: {stats.written} messages, {stats.bytes_written} bytes, {stats.dropped} dropped"
    )


# --------------------------------------------------------------------------- replay


def _parse_map(items: Sequence[str] | None) -> dict[str, str] | None:
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        topic, sep, stream = item.partition("=")
        if not sep or not topic or not stream:
            raise ConfigError(
                f"--map {item!r}: expected TOPIC=STREAM, e.g. /camera/image_raw=scene_cam"
            )
        out[topic] = stream
    return out


def _replay(args: argparse.Namespace) -> int:
    from mmrobot.drivers.recording import inspect_recording, recover_recording
    from mmrobot.drivers.replay import Replay

    if args.recover:
        info = recover_recording(args.file, args.recover)
        print(info.describe())
        lost = sum(c.message_count for c in info.corrupt_chunks)
        print(
            f"wrote {args.recover}: {info.message_count} messages"
            + (
                f"; left out {len(info.corrupt_chunks)} corrupted chunk(s) ({lost} messages)"
                if info.corrupt_chunks
                else ""
            )
        )
        return 0 if info.message_count else 1
    if args.info:
        info = inspect_recording(args.file, check_chunks=True)
        print(info.describe())
        _print_info(info)
        return 0
    if not args.fast and not args.speed > 0:
        raise ConfigError(f"--speed must be > 0, got {args.speed}")
    replay = Replay.from_file(
        args.file,
        _parse_map(args.map),
        mode="fast" if args.fast else "realtime",
        speed=args.speed,
        capacity=4096,
    )
    if not replay.info.complete:
        print(replay.info.describe(), file=sys.stderr)
    counts: dict[str, int] = {s.name: 0 for s in replay.specs}
    lost: dict[str, int] = {s.name: 0 for s in replay.specs}
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    seqs = {name: 0 for name in replay.buffers}
    t0 = time.monotonic()

    def drain() -> None:
        for name, buf in replay.buffers.items():
            times, _, seqs[name], dropped = buf.read_since(seqs[name])
            lost[name] += dropped
            if len(times):
                counts[name] += len(times)
                first.setdefault(name, int(times[0]))
                last[name] = int(times[-1])

    with replay:
        try:
            while not replay.wait_done(0.02):
                drain()
            drain()  # done is set after the last push
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
    wall = time.monotonic() - t0
    if replay.corrupt_chunks:
        from mmrobot.drivers.recording.chunk_check import describe_corruption

        print(describe_corruption(replay.corrupt_chunks))
    rows = []
    for s in replay.specs:
        span = (last[s.name] - first[s.name]) / 1e9 if s.name in first else 0.0
        rate = (counts[s.name] - 1) / span if span > 0 else 0.0
        rows.append(
            (
                s.name,
                s.modality,
                str(s.shape),
                s.dtype,
                str(counts[s.name]),
                f"{rate:.1f}",
                str(lost[s.name]),
            )
        )
    _table(("stream", "modality", "shape", "dtype", "samples", "rate_hz", "overrun"), rows)
    print(
        f"replayed {sum(counts.values())} samples in {wall:.2f} s"
        + (
            f"; {replay.decode_errors} messages could not be decoded: {replay.stats.last_error}"
            if replay.decode_errors
            else ""
        )
    )
    return 0


def _print_info(info: RecordingInfo) -> None:
    by_topic: Mapping[str, str] = {ti.topic: n for n, ti in info.stream_topics.items()}
    rows = []
    for topic, mtype in sorted(info.topics.items()):
        name = by_topic.get(topic, "")
        spec = info.specs.get(name)
        rows.append(
            (
                topic,
                mtype,
                str(info.messages.get(topic, 0)),
                name,
                "" if spec is None else f"{spec.modality} {spec.shape} {spec.dtype}",
            )
        )
    _table(("topic", "type", "messages", "stream", "spec"), rows)
    if info.start_ns is not None and info.end_ns is not None:
        print(
            f"stamps {info.start_ns} .. {info.end_ns} ns ({(info.end_ns - info.start_ns) / 1e9:.3f} s)"
        )


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
