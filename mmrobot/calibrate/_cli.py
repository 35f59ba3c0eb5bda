"""``mmrobot calibrate KIND RIG``: measure a rig's spatial calibration and write it into a copy
of the rig file (or, with ``--check``, report how far the rig file has drifted)."""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["register"]

_KINDS = ("ft-payload", "camera-intrinsics", "hand-eye", "lidar")
_DEFAULT_VIEWS = {"ft-payload": 8, "camera-intrinsics": 8, "hand-eye": 8, "lidar": 10}
_EXAMPLES = """examples:
  mmrobot calibrate ft-payload drivers/emulated_rig.toml --sim --out /tmp/rig.ft.toml
  mmrobot hil --calibration-targets --camera-size 640x480 &     # the HIL rig, then:
  mmrobot calibrate ft-payload /tmp/mmrobot-hil/rig.toml --out /tmp/hil.ft.toml
  mmrobot calibrate camera-intrinsics /tmp/rig.ft.toml --sim --out /tmp/rig.cam.toml --picture corners.png
  mmrobot calibrate hand-eye /tmp/rig.cam.toml --sim --out /tmp/rig.he.toml
  mmrobot calibrate lidar /tmp/rig.he.toml --sim --out /tmp/rig.calibrated.toml
  mmrobot calibrate hand-eye /tmp/rig.calibrated.toml --sim --check"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="measure camera intrinsics, hand-eye, lidar-to-base or the F/T payload and write "
        "them into a copy of the rig file",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=_KINDS, help="which calibration")
    p.add_argument("rig", type=Path, help="rig file (drivers/*.toml)")
    p.add_argument("--driver", help="the rig entry to calibrate (default: the one of that kind)")
    p.add_argument("--out", type=Path, help="calibrated copy (default: RIG.calibrated.toml)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.add_argument("--check", action="store_true", help="measure and report drift; write nothing")
    p.add_argument(
        "--sim",
        action="store_true",
        help="measure on the simulated robot (MuJoCo calibration scene) instead of the devices",
    )
    p.add_argument(
        "--kinematics",
        type=Path,
        help="the arm's MJCF for poses and forward kinematics on a rig (default envs/tabletop.xml)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=0.6,
        help="joint speed of the moves on a rig, rad/s (default 0.6)",
    )
    p.add_argument("--views", type=int, help="poses / views / scans (default: 8, 8, 8, 10 by kind)")
    p.add_argument("--seed", type=int, default=0, help="pose generator and sim noise seed")
    p.add_argument("--picture", type=Path, help="save the detected corners of one view (PNG)")
    p.set_defaults(func=_calibrate)


def _entry(rig: Any, kind: str, name: str | None) -> Any:
    from mmrobot.core.errors import ConfigError

    if name is not None:
        return rig.driver(name)
    kinds = {
        "ft-payload": ("ft300",),
        "camera-intrinsics": ("camera",),
        "hand-eye": ("camera",),
        "lidar": ("rplidar", "ld06"),
    }[kind]
    found = [d for d in rig.drivers if d.kind in kinds and d.enabled]
    if kind in ("camera-intrinsics", "hand-eye"):
        wrist = [d for d in found if (d.stream.name or "").startswith("wrist")]
        found = wrist or found
    if len(found) != 1:
        raise ConfigError(
            f"{rig.source}: {len(found)} enabled {'/'.join(kinds)} entries "
            f"{[d.name for d in found]} for {kind}; name one with --driver"
        )
    return found[0]


def _calibrate(args: argparse.Namespace) -> int:
    from mmrobot.calibrate.rig_io import write_rig_copy
    from mmrobot.core.errors import ConfigError, OutputExistsError
    from mmrobot.drivers.rig import load_rig

    rig_file = load_rig(args.rig)
    entry = _entry(rig_file, args.kind, args.driver)
    n = args.views if args.views is not None else _DEFAULT_VIEWS[args.kind]
    if n < 1:
        raise ConfigError(f"--views must be >= 1, got {n}")
    out = args.out or args.rig.with_suffix(".calibrated.toml")
    if not args.check and out.exists() and not args.force:
        raise OutputExistsError(f"{out} exists; choose another --out or pass --force")
    if args.speed <= 0:
        raise ConfigError(f"--speed must be a positive joint speed in rad/s, got {args.speed}")
    if args.sim:
        outcome = _run_sim(args, entry, n)
        where, truth_label = "simulated robot", "sim ground truth"
    else:
        outcome = _run_devices(args, rig_file, entry, n)
        where, truth_label = "through the rig's drivers", "HIL ground truth"
    print(f"{args.kind} of {entry.name!r} ({rig_file.source}), {where}:")
    for line in outcome.lines:
        print(f"  {line}")
    for line in outcome.truth_lines:
        print(f"  {truth_label}: {line}")
    if args.picture is not None and outcome.image is not None:
        import cv2

        args.picture.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.picture), outcome.image[:, :, ::-1])
        print(f"  wrote {args.picture}")
    if args.check:
        bad = []
        print(f"drift against {rig_file.source}:")
        for what, (value, tol) in outcome.drift.items():
            ok = value <= tol
            shown = "not calibrated" if math.isinf(value) else f"{value:.4g}"
            print(f"  {what:24s} {shown:>14s}  (tolerance {tol:.3g}) {'ok' if ok else 'DRIFTED'}")
            if not ok:
                bad.append(what)
        if bad:
            print(f"recalibrate: `mmrobot calibrate {args.kind} {args.rig} ...` ({', '.join(bad)})")
            return 1
        return 0
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"calibrated copy of {args.rig}: `mmrobot calibrate {args.kind}` on {date} "
        f"({'simulation' if args.sim else 'devices'}) updated entry {entry.name!r}"
    )
    path = write_rig_copy(args.rig, out, entry.name, outcome.values, header, overwrite=args.force)
    print(f"wrote {path} (entry {entry.name!r}: {', '.join(outcome.values)})")
    return 0


def _run_sim(args: argparse.Namespace, entry: Any, n: int) -> Any:
    from mmrobot.calibrate.procedures import run_procedure
    from mmrobot.calibrate.sim import DATASHEET_NOISE, SimCalibrationRig
    from mmrobot.calibrate.targets import build_calibration_scene

    with tempfile.TemporaryDirectory(prefix="mmrobot-calib-") as tmp:
        scene = build_calibration_scene(tmp)
        noise = DATASHEET_NOISE.with_seed(args.seed)
        with SimCalibrationRig(scene, noise) as rig:
            return run_procedure(args.kind, rig, entry, n_views=n, seed=args.seed)


def _run_devices(args: argparse.Namespace, rig_file: Any, entry: Any, n: int) -> Any:
    from mmrobot.calibrate.devices import DeviceCalibrationRig, hil_ground_truth
    from mmrobot.calibrate.procedures import camera_name, run_procedure
    from mmrobot.core.errors import ConfigError

    needed = {entry.name}
    if args.kind != "lidar":
        needed |= {d.name for d in rig_file.drivers if d.kind == "dynamixel" and d.enabled}
        needed |= {a.name for a in rig_file.actuators if a.kind == "dynamixel"}
    problems = [
        p for p in rig_file.port_problems() if any(f" of {name!r} " in p for name in needed)
    ]
    if problems:
        raise ConfigError(
            "; ".join(problems) + ". To calibrate on the HIL rig, start `mmrobot hil "
            "--calibration-targets --camera-size 640x480` and pass the rig file it writes "
            "(/tmp/mmrobot-hil/rig.toml); to calibrate the simulated robot, pass --sim"
        )
    kw: dict[str, Any] = {"arm": args.kind != "lidar"}
    if args.kind == "ft-payload":
        kw["ft"] = entry.name
    elif args.kind == "lidar":
        kw["lidar"] = entry.name
    else:
        kw["cameras"] = {camera_name(entry): entry.name}
    with (
        tempfile.TemporaryDirectory(prefix="mmrobot-calib-") as tmp,
        DeviceCalibrationRig(
            rig_file,
            tmp,
            kinematics=args.kinematics,
            truth=hil_ground_truth(args.rig),
            max_speed_rad_s=args.speed,
            **kw,
        ) as rig,
    ):
        return run_procedure(args.kind, rig, entry, n_views=n, seed=args.seed)
