"""``mmrobot emulate KIND`` (device emulators on ptys) and ``mmrobot rig`` (check / run a rig).

``record`` and ``replay`` live in :mod:`mmrobot.drivers._cli_recording`, registered from here
when that module is present.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from mmrobot.core.errors import ConfigError

__all__ = ["register", "DEFAULT_EMU_DIR", "EMULATOR_KINDS"]

DEFAULT_EMU_DIR = Path("/tmp/mmrobot-emu")
EMULATOR_KINDS = ("dynamixel", "rplidar", "ld06", "ft300")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``emulate`` and ``rig`` (and ``record``/``replay`` when available)."""
    emu = subparsers.add_parser(
        "emulate",
        help="serve an emulated device (dynamixel, rplidar, ld06, ft300, all) on a pseudo-terminal",
        description="Run a device emulator that speaks the device's real wire protocol on a "
        "pseudo-terminal; prints the port path (and a stable link to it) and serves until "
        "Ctrl-C or --duration. `all` starts the four serial devices and writes two camera "
        "videos, which is what drivers/emulated_rig.toml expects.",
    )
    emu.add_argument("kind", choices=(*EMULATOR_KINDS, "all"))
    emu.add_argument(
        "--link",
        default=None,
        metavar="PATH",
        help=f"stable symlink to the pty (default {DEFAULT_EMU_DIR}/KIND)",
    )
    emu.add_argument(
        "--dir", default=str(DEFAULT_EMU_DIR), metavar="DIR", help="folder for links and videos"
    )
    emu.add_argument(
        "--duration", type=float, default=None, metavar="S", help="stop after S seconds"
    )
    emu.add_argument(
        "--corrupt-rate", type=float, default=0.0, help="probability a sent byte is corrupted"
    )
    emu.add_argument(
        "--corrupt-mode",
        choices=("bit", "byte"),
        default="bit",
        help="a corrupted byte gets one bit flipped (bit) or a random other value (byte)",
    )
    emu.add_argument(
        "--drop-rate", type=float, default=0.0, help="probability a sent byte is dropped"
    )
    emu.add_argument(
        "--unplug-after",
        type=float,
        default=None,
        metavar="S",
        help="close the pty after S seconds",
    )
    emu.add_argument(
        "--replug-after",
        type=float,
        default=None,
        metavar="S",
        help="reopen it S seconds after unplugging",
    )
    emu.add_argument("--seed", type=int, default=0)
    emu.add_argument(
        "--line-baud",
        type=int,
        default=None,
        metavar="BAUD",
        help="spend each byte's wire time at this baud rate (a pty alone has none)",
    )
    emu.add_argument(
        "--servos",
        default="1-7:XM430-W350",
        help="dynamixel: ids and models, e.g. '1-6:XM430-W350,7:XL330-M288'",
    )
    emu.add_argument(
        "--position-noise",
        type=float,
        default=0.3,
        metavar="TICKS",
        help="dynamixel: present-position noise std",
    )
    emu.add_argument("--wrench", default="0,0,0,0,0,0", help="ft300: fx,fy,fz (N),tx,ty,tz (N*m)")
    emu.add_argument(
        "--noise",
        type=float,
        default=0.02,
        help="ft300: force noise std (N); torque noise is 1/100 of it",
    )
    emu.add_argument(
        "--rotation-hz", type=float, default=10.0, help="lidars: revolutions per second"
    )
    emu.set_defaults(func=_emulate)

    rig = subparsers.add_parser(
        "rig",
        help="validate a rig file, list its streams, optionally open it and print live stats",
        description="Load and validate RIG (drivers/*.toml), print its drivers and streams, and "
        "check that its serial ports exist (exit 2 when not); with --run S open every driver "
        "for S seconds and print samples, rates, errors and health.",
    )
    rig.add_argument("rig", help="rig file (drivers/*.toml)")
    rig.add_argument(
        "--run", type=float, default=None, metavar="S", help="open the drivers for S seconds"
    )
    rig.set_defaults(func=_rig)

    try:
        from mmrobot.drivers import _cli_recording
    except ImportError:
        return
    _cli_recording.register(subparsers)


# --------------------------------------------------------------------------- emulate


def _parse_servos(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for part in text.split(","):
        ids, sep, model = part.strip().partition(":")
        if not sep or not model:
            raise ConfigError(
                f"--servos entry {part!r} must look like '1-6:XM430-W350' or '7:XL330-M288'"
            )
        try:
            if "-" in ids:
                lo, hi = (int(x) for x in ids.split("-"))
                out += [(i, model) for i in range(lo, hi + 1)]
            else:
                out.append((int(ids), model))
        except ValueError:
            raise ConfigError(f"--servos ids {ids!r} are not integers") from None
    return out


def _parse_floats(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"{what} {text!r} must be {n} comma-separated numbers") from None
    if len(values) != n:
        raise ConfigError(f"{what} {text!r} must have {n} numbers, got {len(values)}")
    return values


def make_emulator(kind: str, args: argparse.Namespace, link: Path) -> Any:
    """Build (not start) the emulator of ``kind`` from the CLI options."""
    from mmrobot.drivers import emulators as em

    common: dict[str, Any] = dict(
        link=link,
        corrupt_rate=args.corrupt_rate,
        corrupt_mode=args.corrupt_mode,
        drop_rate=args.drop_rate,
        unplug_after_s=args.unplug_after,
        replug_after_s=args.replug_after,
        seed=args.seed,
        line_baud=args.line_baud,
    )
    if not (0 <= args.corrupt_rate <= 1 and 0 <= args.drop_rate <= 1):
        raise ConfigError("--corrupt-rate and --drop-rate must be in [0, 1]")
    if kind == "dynamixel":
        try:
            return em.DynamixelEmulator(
                _parse_servos(args.servos), position_noise_ticks=args.position_noise, **common
            )
        except ValueError as e:
            raise ConfigError(str(e)) from None
    if kind == "ft300":
        return em.FT300Emulator(
            _parse_floats(args.wrench, 6, "--wrench"),
            noise_force_n=args.noise,
            noise_torque_nm=args.noise / 100.0,
            **common,
        )
    if kind == "rplidar":
        return em.RplidarEmulator(rotation_hz=args.rotation_hz, range_noise_m=0.005, **common)
    if kind == "ld06":
        return em.LD06Emulator(rotation_hz=args.rotation_hz, range_noise_m=0.005, **common)
    raise ConfigError(f"unknown emulator kind {kind!r}; choose from {EMULATOR_KINDS}")


def write_demo_video(
    path: Path,
    *,
    size: tuple[int, int] = (320, 240),
    n_frames: int = 60,
    fps: float = 30.0,
    hue: int = 0,
) -> Path:
    """A short looping MJPG video of a moving square (a stand-in camera for emulated rigs)."""
    from mmrobot.core.deps import require

    cv2 = require("cv2", "writing the emulated camera video")
    import numpy as np

    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise ConfigError(f"OpenCV cannot write {path}")
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n_frames):
        frame = np.empty((h, w, 3), np.uint8)
        frame[..., 0] = (xx * 255 // w).astype(np.uint8)
        frame[..., 1] = (yy * 255 // h).astype(np.uint8)
        frame[..., 2] = hue
        x = int((w - 40) * (0.5 + 0.5 * np.sin(2 * np.pi * i / n_frames)))
        frame[h // 2 - 20 : h // 2 + 20, x : x + 40] = (0, 0, 255)
        writer.write(frame)
    writer.release()
    return path


def _emulate(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    kinds = EMULATOR_KINDS if args.kind == "all" else (args.kind,)
    if args.link is not None and len(kinds) > 1:
        raise ConfigError("--link names one port; with `all` use --dir")
    running = []
    try:
        for kind in kinds:
            link = Path(args.link) if args.link else folder / kind
            emu = make_emulator(kind, args, link).start()
            running.append(emu)
            print(f"{kind}: {emu.slave_name} (link {emu.port})", flush=True)
        if args.kind == "all":
            for name, hue in (("scene", 40), ("wrist", 200)):
                video = write_demo_video(folder / f"{name}.avi", hue=hue)
                print(f"camera {name}: {video}", flush=True)
        print("serving; Ctrl-C to stop", flush=True)
        end = None if args.duration is None else time.monotonic() + args.duration
        while end is None or time.monotonic() < end:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        for emu in running:
            with contextlib.suppress(Exception):
                emu.stop()
    return 0


# --------------------------------------------------------------------------- rig


def _rig(args: argparse.Namespace) -> int:
    from mmrobot.drivers.rig import load_rig

    rig = load_rig(args.rig)
    drivers = rig.build_drivers()
    print(
        f"rig {rig.name!r} ({rig.source}): {len(drivers)} driver(s), {len(rig.actuators)} actuator(s)"
    )
    for d in rig.drivers:
        where = getattr(d, "port", None) or getattr(d, "device", None)
        state = "" if d.enabled else "  [disabled]"
        print(f"  driver {d.name:<14} kind={d.kind:<10} at {where}{state}")
    for a in rig.actuators:
        print(f"  actuator {a.name:<12} kind={a.kind:<10} at {getattr(a, 'port', '')}")
    print("streams:")
    for drv in drivers:
        for s in drv.specs:
            print(
                f"  {s.name:<12} {s.modality:<7} shape={s.shape!s:<14} {s.dtype:<8} {s.rate_hz:g} Hz "
                f"{s.policy:<7} max_age={s.max_age_ns / 1e6:g} ms latency={s.latency_ns / 1e6:g} ms history={s.history}"
            )
    problems = rig.port_problems()
    if problems:
        raise ConfigError(f"{rig.source}:\n  " + "\n  ".join(problems))
    if args.run is None:
        return 0
    opened = []
    try:
        for drv in drivers:
            drv.open()
            opened.append(drv)
        time.sleep(args.run)
        print(f"after {args.run:g} s:")
        for drv in opened:
            st = drv.stats
            rate = st.samples / args.run
            print(
                f"  {drv.name:<14} health={drv.health.value:<12} samples={st.samples:<6} ({rate:.1f}/s) "
                f"bytes={st.bytes} crc_errors={st.checksum_errors} resyncs={st.resyncs} "
                f"timeouts={st.timeouts} reconnects={st.reconnects} errors={st.errors}"
            )
            if st.last_error:
                print(f"    last error: {st.last_error}")
    finally:
        for drv in opened:
            drv.close()
    return 0 if all(d.stats.samples > 0 for d in opened) else 1


if __name__ == "__main__":  # pragma: no cover
    from mmrobot.cli import main

    sys.exit(main(["emulate", *sys.argv[1:]]))
