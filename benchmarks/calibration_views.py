"""How many poses, views or scans each calibration procedure needs to meet issue 17's targets.

On the simulated rig (``SimCalibrationRig`` in the calibration scene of
``build_calibration_scene``) with the datasheet-sized sensor errors the tests inject
(``DATASHEET_NOISE``: F/T 0.1 N / 0.005 N*m of noise plus a bias to find, 3 grey levels of
pixel noise, 1 cm of lidar range noise, a 4096-tick encoder's quantization), each procedure
runs for every count and seed, the way ``mmrobot calibrate KIND RIG --sim --views N --seed S``
does: the seed drives the pose generator and the noise. Errors are against the simulation's
ground truth:

- ft-payload (50 samples per pose): mass and centre of mass, force and torque bias (each as a
  fraction of the injected one);
- camera-intrinsics: focal length (the worse of fx, fy) and reprojection RMS;
- hand-eye, Tsai-Lenz and Park-Martin, on the same views with the intrinsics calibrated from
  them (as the tests do): translation and rotation of the camera in the TCP frame;
- lidar: x, y and yaw of the lidar, mounted 7 cm and 11 deg away from the rig file's guess
  (the tests' mount), from planar scans of the calibration box.

The table gives the worst error over the seeds for each count, and per procedure the smallest
count that meets every target on every seed. A run the procedure refuses (too few views
showing the board, say) counts as a miss.

    python benchmarks/calibration_views.py --json out/calibration_views.json
    python benchmarks/calibration_views.py --quick      # 1 seed, 2 counts: a smoke run
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import print_table, write_json  # noqa: E402

from mmrobot.calibrate._geometry import matrix_to_rpy, rotation_angle_rad  # noqa: E402
from mmrobot.calibrate.ft_payload import measure_ft_payload  # noqa: E402
from mmrobot.calibrate.hand_eye import calibrate_hand_eye  # noqa: E402
from mmrobot.calibrate.intrinsics import calibrate_intrinsics, collect_board_views  # noqa: E402
from mmrobot.calibrate.lidar import collect_scans, fit_lidar_to_box  # noqa: E402
from mmrobot.calibrate.poses import PoseChecker, camera_view_poses, ft_payload_poses  # noqa: E402
from mmrobot.calibrate.sim import DATASHEET_NOISE, SimCalibrationRig  # noqa: E402
from mmrobot.calibrate.targets import CalibrationScene, build_calibration_scene  # noqa: E402
from mmrobot.core.errors import ConfigError  # noqa: E402
from mmrobot.envs import names  # noqa: E402

COUNTS = (4, 5, 6, 8, 10)
QUICK_COUNTS = (4, 6)
FT_SAMPLES_PER_POSE = 50
# Where the lidar really is, and the rig file's guess (7 cm and 11 deg off): as in
# tests/calibrate/conftest.py and tests/calibrate/test_calibrate_lidar.py.
TRUE_LIDAR_XYZ_M = (0.06, -0.04, 0.05)
TRUE_LIDAR_RPY_RAD = (0.0, 0.0, 0.35)
GUESS_XY_M, GUESS_YAW_RAD = (0.0, 0.0), 0.15

PROCEDURES = ("ft-payload", "camera-intrinsics", "hand-eye (tsai)", "hand-eye (park)", "lidar")
# procedure -> [(quantity key, label, target, unit)]: issue 17's targets
TARGETS: dict[str, list[tuple[str, str, float, str]]] = {
    "ft-payload": [
        ("mass_pct", "mass", 2.0, "%"),
        ("com_mm", "centre of mass", 5.0, "mm"),
        ("force_bias_pct", "force bias (of the injected)", 2.0, "%"),
        ("torque_bias_pct", "torque bias (of the injected)", 2.0, "%"),
    ],
    "camera-intrinsics": [
        ("focal_pct", "focal length (worse of fx, fy)", 0.5, "%"),
        ("reprojection_px", "reprojection RMS", 0.3, "px"),
    ],
    "hand-eye (tsai)": [
        ("translation_mm", "translation", 2.0, "mm"),
        ("rotation_deg", "rotation", 0.3, "deg"),
    ],
    "hand-eye (park)": [
        ("translation_mm", "translation", 2.0, "mm"),
        ("rotation_deg", "rotation", 0.3, "deg"),
    ],
    "lidar": [
        ("translation_mm", "translation (x, y)", 5.0, "mm"),
        ("yaw_deg", "yaw", 0.5, "deg"),
    ],
}
# the runners: one set of camera views serves intrinsics and both hand-eye methods
RUNNER_OF = {
    "ft-payload": "ft-payload",
    "camera-intrinsics": "camera",
    "hand-eye (tsai)": "camera",
    "hand-eye (park)": "camera",
    "lidar": "lidar",
}

# procedure -> its errors against ground truth (and counts), or why the procedure refused
Result = dict[str, dict[str, float] | str]


def run_ft_payload(scene: CalibrationScene, n: int, seed: int) -> Result:
    with SimCalibrationRig(scene, DATASHEET_NOISE.with_seed(seed)) as rig:
        checker = PoseChecker(rig.scene.model, rig.joint_range)
        poses = ft_payload_poses(checker, rig.scene.home_qpos, n, seed=seed)
        r = measure_ft_payload(rig, rig.frames, poses, samples_per_pose=FT_SAMPLES_PER_POSE)
        mass, com = rig.true_payload()
        bias = rig.true_ft_bias()
    err = r.bias - bias
    return {
        "ft-payload": {
            "mass_pct": 100 * abs(r.mass_kg / mass - 1),
            "com_mm": 1000 * float(np.linalg.norm(r.com_m - com)),
            "force_bias_pct": 100 * float(np.linalg.norm(err[:3]) / np.linalg.norm(bias[:3])),
            "torque_bias_pct": 100 * float(np.linalg.norm(err[3:]) / np.linalg.norm(bias[3:])),
            "poses": float(r.n_poses),
        }
    }


def run_camera(scene: CalibrationScene, n: int, seed: int) -> Result:
    camera = names.WRIST_CAMERA
    with SimCalibrationRig(scene, DATASHEET_NOISE.with_seed(seed)) as rig:
        checker = PoseChecker(rig.scene.model, rig.joint_range)
        poses = camera_view_poses(
            checker,
            lambda p, r, q0: rig.scene.solve_ik(p, r, q0=q0, iters=100),
            camera,
            rig.scene.home_qpos,
            np.asarray(scene.board.center_m),
            n,
            seed=seed,
        )
        views, missed = collect_board_views(rig, camera, poses, scene.board)
        k_true = rig.true_intrinsics(camera)
        x_true = rig.true_camera_in_tcp(camera)
        frames = rig.frames
    intr = calibrate_intrinsics(views, scene.board)
    k = intr.camera_matrix
    out: Result = {
        "camera-intrinsics": {
            "focal_pct": 100 * float(np.abs(np.diag(k)[:2] / np.diag(k_true)[:2] - 1).max()),
            "reprojection_px": float(intr.rms_px),
            "principal_point_px": float(np.hypot(*(k[:2, 2] - k_true[:2, 2]))),
            "views": float(len(views)),
            "missed": float(missed),
        }
    }
    try:
        hand_eye = calibrate_hand_eye(views, scene.board, frames, k, intr.dist_coeffs)
    except ConfigError as e:  # the intrinsics stand; hand-eye refused these views
        return {**out, "hand-eye (tsai)": str(e), "hand-eye (park)": str(e)}
    for he in hand_eye:
        x = he.camera_in_tcp
        out[f"hand-eye ({he.method})"] = {
            "translation_mm": 1000 * float(np.linalg.norm(x[:3, 3] - x_true[:3, 3])),
            "rotation_deg": math.degrees(rotation_angle_rad(x[:3, :3], x_true[:3, :3])),
            "board_spread_mm": 1000 * he.board_spread_m,
            "views": float(he.n_views),
        }
    return out


def run_lidar(scene: CalibrationScene, n: int, seed: int) -> Result:
    with SimCalibrationRig(scene, DATASHEET_NOISE.with_seed(seed)) as rig:
        scans = collect_scans(rig, n)
        truth = rig.true_lidar_pose()
    r = fit_lidar_to_box(scans, scene.box.outline(), np.asarray(GUESS_XY_M), GUESS_YAW_RAD)
    dyaw = math.remainder(r.yaw_rad - matrix_to_rpy(truth[:3, :3])[2], 2 * math.pi)
    return {
        "lidar": {
            "translation_mm": 1000 * float(np.linalg.norm(r.xy_m - truth[:2, 3])),
            "yaw_deg": abs(math.degrees(dyaw)),
            "residual_mm": 1000 * r.residual_m,
            "scans": float(r.n_scans),
        }
    }


RUNNERS: dict[str, Callable[[CalibrationScene, int, int], Result]] = {
    "ft-payload": run_ft_payload,
    "camera": run_camera,
    "lidar": run_lidar,
}


def meets(errors: dict[str, float] | None, procedure: str) -> bool:
    if errors is None:
        return False
    return all(errors[key] <= target for key, _, target, _ in TARGETS[procedure])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"1 seed, counts {QUICK_COUNTS}")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    ap.add_argument(
        "--counts", type=int, nargs="+", default=None, help=f"poses/views/scans (default {COUNTS})"
    )
    ap.add_argument(
        "--procedures",
        nargs="+",
        choices=sorted(set(RUNNER_OF.values())),
        default=None,
        help="run only these (camera: intrinsics and both hand-eye methods)",
    )
    ap.add_argument("--json", default=None, metavar="PATH")
    args = ap.parse_args()
    seeds = list(range(1 if args.quick else args.seeds))
    counts = sorted(args.counts or (QUICK_COUNTS if args.quick else COUNTS))
    runners = [r for r in RUNNERS if args.procedures is None or r in args.procedures]
    procedures = [p for p in PROCEDURES if RUNNER_OF[p] in runners]

    runs: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        scene = build_calibration_scene(
            tmp, lidar_xyz_m=TRUE_LIDAR_XYZ_M, lidar_rpy_rad=TRUE_LIDAR_RPY_RAD
        )
        for runner in runners:
            for n in counts:
                for seed in seeds:
                    t0 = time.perf_counter()
                    mine = [p for p in procedures if RUNNER_OF[p] == runner]
                    try:
                        out = RUNNERS[runner](scene, n, seed)
                    except ConfigError as e:  # a refusal is a result: this count is not enough
                        out = dict.fromkeys(mine, str(e))
                    seconds = time.perf_counter() - t0
                    for p in mine:
                        res = out[p]
                        runs.append(
                            {
                                "procedure": p,
                                "count": n,
                                "seed": seed,
                                "errors": None if isinstance(res, str) else res,
                                "refused": res if isinstance(res, str) else None,
                                "seconds": seconds,
                            }
                        )
                    refusals = sorted({f"{p}: {out[p]}" for p in mine if isinstance(out[p], str)})
                    status = "; ".join(refusals) or "ok"
                    print(f"{runner} n={n} seed={seed}: {seconds:.1f} s, {status}", flush=True)

    # worst over the seeds, per procedure, quantity and count (None: some seed was refused)
    worst: dict[str, dict[str, dict[int, float | None]]] = {}
    smallest: dict[str, int | None] = {}
    meeting: dict[str, list[int]] = {}
    for p in procedures:
        mine = [r for r in runs if r["procedure"] == p]
        worst[p] = {}
        for key, _, _, _ in TARGETS[p]:
            worst[p][key] = {}
            for n in counts:
                errs = [r["errors"] for r in mine if r["count"] == n]
                worst[p][key][n] = (
                    None if any(e is None for e in errs) else max(e[key] for e in errs)
                )
        meeting[p] = [
            n for n in counts if all(meets(r["errors"], p) for r in mine if r["count"] == n)
        ]
        smallest[p] = min(meeting[p], default=None)

    cols = ["procedure", "quantity", "target", *[str(n) for n in counts]]
    rows = []
    for p in procedures:
        for key, label, target, unit in TARGETS[p]:
            cells = []
            for n in counts:
                v = worst[p][key][n]
                cells.append("refused" if v is None else f"{v:.3g}{'' if v <= target else ' !'}")
            rows.append([p, label, f"{target:g} {unit}", *cells])
    print_table(
        f"calibration_views: worst error over {len(seeds)} seed(s) per number of poses/views/"
        "scans, DATASHEET_NOISE ('!': misses the target)",
        cols,
        rows,
    )
    summary = [
        [
            p,
            "none" if smallest[p] is None else smallest[p],
            ", ".join(map(str, meeting[p])) or "-",
        ]
        for p in procedures
    ]
    print_table(
        "smallest count meeting every target on every seed",
        ["procedure", "smallest", "counts that meet"],
        summary,
    )
    print(f"total {time.perf_counter() - t_start:.0f} s")
    noise = asdict(DATASHEET_NOISE)
    noise.pop("seed")
    write_json(
        args.json,
        {
            "seeds": seeds,
            "counts": counts,
            "noise": noise,
            "ft_samples_per_pose": FT_SAMPLES_PER_POSE,
            "lidar": {
                "true_xyz_m": TRUE_LIDAR_XYZ_M,
                "true_rpy_rad": TRUE_LIDAR_RPY_RAD,
                "guess_xy_m": GUESS_XY_M,
                "guess_yaw_rad": GUESS_YAW_RAD,
            },
            "targets": {
                p: {key: {"target": t, "unit": u} for key, _, t, u in TARGETS[p]}
                for p in procedures
            },
            "worst": worst,
            "smallest_count": smallest,
            "counts_meeting": meeting,
            "runs": runs,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
