"""Driver benchmarks: decoder throughput vs line rate, Dynamixel round trip, camera CPU share.

    python benchmarks/bench_drivers.py [--quick] [--json PATH]

1. Decode throughput of each pure decoder (bytes fed in 512-byte reads; per CPU-second of the
   decoding thread), in frames/s and as a multiple of the line rate at the protocol's standard baud rate (8N1: 10 bits per byte) --
   the line rate is the baseline: a decoder at 1x would just keep up with the wire.
2. Dynamixel Sync Read of present position/velocity/current of 6 servos against the pty
   emulator: once over the bare pty (no baud rate: the software's own overhead), once with the
   emulator spending each byte's wire time at 1 Mbaud (what a real bus adds).
3. CPU share of the camera reader thread at 30 fps, 640x480, from a generated MJPG file,
   published at 96x96 (from /proc/self/task/<tid>/stat of that thread).
Figures are medians of repeated runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mmrobot.core.errors import DeviceTimeoutError
from mmrobot.drivers.protocols import dynamixel as dxl
from mmrobot.drivers.protocols import ft300, ld06, rplidar


def _median_cpu_s(fn, repeats: int) -> float:
    """Median CPU time of ``fn`` on this thread: what decoding costs, unaffected by other
    processes sharing the machine (wall time on a busy 2-core box varies 3x run to run)."""
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def _feed_all(make_decoder, wire: bytes, chunk: int = 512) -> int:
    dec = make_decoder()
    n = 0
    for i in range(0, len(wire), chunk):
        out = dec.feed(wire[i : i + chunk])
        n += len(out)
    return n


def bench_decoders(quick: bool) -> list[dict]:
    rng = np.random.default_rng(0)
    n = 2000 if quick else 10000
    repeats = 3 if quick else 7
    cases = []
    # Dynamixel: status packets of a 16-byte joint-state sync read
    frames = [
        dxl.build_packet(
            1 + i % 6, dxl.Inst.STATUS, b"\x00" + rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
        )
        for i in range(n)
    ]
    cases.append(
        (
            "dynamixel",
            "Protocol 2.0 status (16 B data)",
            1_000_000,
            b"".join(frames),
            dxl.PacketDecoder,
            n,
        )
    )
    frames = [ft300.encode_frame(rng.uniform(-100, 100, 6)) for _ in range(n)]
    cases.append(("ft300", "stream frame", 19_200, b"".join(frames), ft300.FrameDecoder, n))
    m = n * 10
    ang = (np.arange(m) * 1.0) % 360.0
    wire = rplidar.encode_nodes(ang, rng.uniform(100, 8000, m), np.full(m, 47), ang == 0.0)
    cases.append(("rplidar", "scan node", 115_200, wire, rplidar.NodeDecoder, m - 1))
    frames = [
        ld06.encode_packet(
            3600,
            (i * 9.6) % 360,
            (i * 9.6 + 8.8) % 360,
            rng.uniform(0, 8000, 12),
            np.full(12, 200),
            i,
        )
        for i in range(n)
    ]
    cases.append(("ld06", "47-byte packet", 230_400, b"".join(frames), ld06.LD06Decoder, n))
    rows = []
    for name, frame, baud, wire, make, expect in cases:
        got = _feed_all(make, wire)
        if name != "rplidar" and got != expect:
            raise RuntimeError(f"{name}: decoded {got} frames, expected {expect}")
        if name == "rplidar":
            dec = make()
            got = sum(len(dec.feed(wire[i : i + 512])) for i in range(0, len(wire), 512))
            if got != expect:
                raise RuntimeError(f"rplidar: decoded {got} nodes, expected {expect}")
        t = _median_cpu_s(lambda make=make, wire=wire: _feed_all(make, wire), repeats)
        bytes_s = len(wire) / t
        line_bytes_s = baud / 10.0
        rows.append(
            dict(
                protocol=name,
                frame=frame,
                baud=baud,
                frames_per_s=got / t,
                mbytes_per_s=bytes_s / 1e6,
                line_rate_frames_per_s=line_bytes_s / (len(wire) / got),
                x_line_rate=bytes_s / line_bytes_s,
            )
        )
    return rows


def bench_dynamixel_roundtrip(quick: bool, line_baud: int | None = None) -> dict:
    from mmrobot.drivers.dynamixel import DynamixelBus
    from mmrobot.drivers.emulators import DynamixelEmulator

    ids = [1, 2, 3, 4, 5, 6]
    n = 200 if quick else 1000
    with (
        tempfile.TemporaryDirectory() as d,
        DynamixelEmulator(
            [(i, "XM430-W350") for i in ids], link=Path(d) / "dxl", line_baud=line_baud
        ) as emu,
    ):
        bus = DynamixelBus(emu.port, 1_000_000, timeout_s=0.2, retries=0)
        try:
            for _ in range(20):  # warm up
                with contextlib.suppress(DeviceTimeoutError):
                    bus.sync_read(ids, dxl.STATE_ADDR, dxl.STATE_LEN)
            samples = []
            timeouts = 0
            for _ in range(n):
                t0 = time.perf_counter()
                try:
                    bus.sync_read(ids, dxl.STATE_ADDR, dxl.STATE_LEN)
                except DeviceTimeoutError:  # an emulator thread descheduled on a busy machine
                    timeouts += 1
                    continue
                samples.append(time.perf_counter() - t0)
        finally:
            bus.close()
    request = len(dxl.build_packet(0xFE, dxl.Inst.SYNC_READ, bytes(4 + len(ids))))
    reply = len(dxl.build_packet(1, dxl.Inst.STATUS, bytes(1 + dxl.STATE_LEN)))
    wire_ms = (request + len(ids) * reply) * 10 / 1_000_000 * 1e3
    ms = np.array(samples) * 1e3
    return dict(
        emulated_line="pty only" if line_baud is None else f"{line_baud} baud wire time",
        servos=len(ids),
        bytes_per_read=dxl.STATE_LEN,
        median_ms=float(np.median(ms)),
        p90_ms=float(np.percentile(ms, 90)),
        max_rate_hz=float(1e3 / np.median(ms)),
        wire_time_at_1mbaud_ms=wire_ms,
        reads=n,
        timeouts=timeouts,
    )


def _thread_cpu_s(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def bench_camera(quick: bool) -> dict:
    from mmrobot.drivers import parse_rig
    from mmrobot.drivers._cli import write_demo_video

    seconds = 2.0 if quick else 5.0
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as d:
        video = write_demo_video(Path(d) / "v.avi", size=(640, 480), n_frames=90, fps=30.0)
        shares, rates = [], []
        for _ in range(repeats):
            entry = {"kind": "camera", "name": "cam", "device": str(video), "fps": 30, "loop": True}
            (drv,) = parse_rig({"driver": [entry]}).build_drivers()
            with drv:
                drv.wait_for_samples(3)
                tid = drv._thread.native_id  # the reader thread
                c0, n0, t0 = _thread_cpu_s(tid), drv.stats.samples, time.monotonic()
                time.sleep(seconds)
                c1, n1, t1 = _thread_cpu_s(tid), drv.stats.samples, time.monotonic()
            shares.append((c1 - c0) / (t1 - t0))
            rates.append((n1 - n0) / (t1 - t0))
    return dict(
        resolution="640x480",
        published="96x96",
        fps_target=30.0,
        fps_measured=statistics.median(rates),
        cpu_share_of_one_core=statistics.median(shares),
        seconds=seconds,
    )


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [title, line, "-" * len(line)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (< 30 s)")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    args = p.parse_args(argv)
    dec = bench_decoders(args.quick)
    print(
        _table(
            "Decoder throughput (pure decoders, 512-byte reads; per CPU second, median)",
            ["protocol", "frame", "baud", "frames/s", "MB/s", "line-rate frames/s", "x line rate"],
            [
                [
                    r["protocol"],
                    r["frame"],
                    str(r["baud"]),
                    f"{r['frames_per_s']:,.0f}",
                    f"{r['mbytes_per_s']:.2f}",
                    f"{r['line_rate_frames_per_s']:,.0f}",
                    f"{r['x_line_rate']:.1f}",
                ]
                for r in dec
            ],
        )
    )
    rts = [bench_dynamixel_roundtrip(args.quick), bench_dynamixel_roundtrip(args.quick, 1_000_000)]
    print()
    print(
        _table(
            "Dynamixel Sync Read round trip, 6 servos x 16 bytes (emulator)",
            [
                "emulated line",
                "servos",
                "median ms",
                "p90 ms",
                "max rate Hz",
                "wire time @1 Mbaud ms",
                "timeouts",
            ],
            [
                [
                    rt["emulated_line"],
                    str(rt["servos"]),
                    f"{rt['median_ms']:.3f}",
                    f"{rt['p90_ms']:.3f}",
                    f"{rt['max_rate_hz']:.0f}",
                    f"{rt['wire_time_at_1mbaud_ms']:.3f}",
                    f"{rt['timeouts']}/{rt['reads']}",
                ]
                for rt in rts
            ],
        )
    )
    cam = bench_camera(args.quick)
    print()
    print(
        _table(
            "Camera reader thread (MJPG file, paced)",
            ["capture", "published", "target fps", "measured fps", "CPU share of one core"],
            [
                [
                    cam["resolution"],
                    cam["published"],
                    f"{cam['fps_target']:.0f}",
                    f"{cam['fps_measured']:.1f}",
                    f"{cam['cpu_share_of_one_core'] * 100:.1f} %",
                ]
            ],
        )
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"decoders": dec, "dynamixel_roundtrip": rts, "camera": cam, "quick": args.quick},
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
