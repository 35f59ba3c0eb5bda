"""The four procedures as ``mmrobot calibrate`` runs them: measure on a rig, turn the result
into rig-file values and a record, and compare a fresh measurement with the rig file (drift).

Drift tolerances are the accuracy targets the procedures meet in simulation (issue 17):
focal length 0.5 %, hand-eye 2 mm / 0.3 deg, lidar 5 mm / 0.5 deg, F/T bias and mass 2 %,
centre of mass 5 mm. A drift beyond them means: recalibrate.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mmrobot.calibrate._geometry import matrix_to_rpy, rotation_angle_rad, rpy_to_matrix
from mmrobot.core.errors import ConfigError

if TYPE_CHECKING:
    from mmrobot.calibrate.base import ProcedureRig
    from mmrobot.drivers.config_models import DriverConfig

__all__ = ["KINDS", "Outcome", "camera_name", "run_procedure"]

KINDS = ("ft-payload", "camera-intrinsics", "hand-eye", "lidar")


@dataclass
class Outcome:
    """One procedure's result, ready to print and write.

    Attributes:
        values: rig-entry keys to write (``calibration`` included).
        lines: a human summary, one line each.
        drift: quantity -> (drift, tolerance) against the rig file's current values.
        truth_lines: in simulation, the errors against ground truth.
        image: a picture to save (camera procedures: detected corners), or None.
    """

    values: dict[str, Any]
    lines: list[str]
    drift: dict[str, tuple[float, float]] = field(default_factory=dict)
    truth_lines: list[str] = field(default_factory=list)
    image: np.ndarray | None = None


def _record(views: int, residuals: dict[str, float], method: str) -> dict[str, Any]:
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    rounded = {k: float(f"{v:.6g}") for k, v in residuals.items()}
    return {"date": date, "views": views, "residuals": rounded, "method": method}


def _calibration(entry: DriverConfig, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """The entry's ``calibration`` table with ``kind``'s record replaced."""
    out = {k: v.model_dump() for k, v in entry.calibration.items()}
    out[kind] = record
    return out


def run_procedure(
    kind: str,
    rig: ProcedureRig,
    entry: DriverConfig,
    *,
    n_views: int,
    seed: int = 0,
) -> Outcome:
    """Run procedure ``kind`` on ``rig`` for the rig-file entry ``entry``."""
    if kind == "ft-payload":
        return _ft_payload(rig, entry, n_views, seed)
    if kind == "camera-intrinsics":
        return _intrinsics(rig, entry, n_views, seed)
    if kind == "hand-eye":
        return _hand_eye(rig, entry, n_views, seed)
    if kind == "lidar":
        return _lidar(rig, entry, n_views)
    raise ConfigError(f"unknown calibration {kind!r}; use one of {list(KINDS)}")


def _checker(rig: ProcedureRig) -> Any:
    from mmrobot.calibrate.poses import PoseChecker

    return PoseChecker(rig.scene.model, rig.joint_range)


def _ft_payload(rig: ProcedureRig, entry: Any, n: int, seed: int) -> Outcome:
    from mmrobot.calibrate.ft_payload import measure_ft_payload
    from mmrobot.calibrate.poses import ft_payload_poses

    poses = ft_payload_poses(_checker(rig), rig.scene.home_qpos, n, seed=seed)
    r = measure_ft_payload(rig, rig.frames, poses)
    record = _record(
        r.n_poses,
        {"force_n": r.residual_force_n, "torque_nm": r.residual_torque_nm, "spread": r.spread},
        "least-squares (Kubus et al. 2008, static)",
    )
    values = {
        "bias": [round(float(x), 5) for x in r.bias],
        "tare_on_open": False,
        "payload": {"mass_kg": round(r.mass_kg, 5), "com_m": [round(float(x), 5) for x in r.com_m]},
        "calibration": _calibration(entry, "ft-payload", record),
    }
    lines = [
        f"bias {np.round(r.bias, 4).tolist()} (N, N*m)",
        f"payload mass {r.mass_kg:.4f} kg, centre of mass {np.round(r.com_m * 1000, 2).tolist()} mm",
        f"residuals {r.residual_force_n:.4f} N, {r.residual_torque_nm:.5f} N*m RMS over "
        f"{r.n_poses} poses (spread {r.spread:.2f})",
    ]
    old_bias = np.asarray(entry.bias)
    drift = {
        "force bias (N)": (float(np.linalg.norm(r.bias[:3] - old_bias[:3])), 0.02 * max(np.linalg.norm(r.bias[:3]), 0.5)),
        "torque bias (N*m)": (float(np.linalg.norm(r.bias[3:] - old_bias[3:])), 0.02 * max(np.linalg.norm(r.bias[3:]), 0.02)),
    }  # fmt: skip
    if entry.payload is not None:
        drift["mass (%)"] = (100 * abs(r.mass_kg / entry.payload.mass_kg - 1), 2.0)
        drift["centre of mass (mm)"] = (
            1000 * float(np.linalg.norm(r.com_m - np.asarray(entry.payload.com_m))),
            5.0,
        )
    else:
        drift["mass (%)"] = (math.inf, 2.0)
    if rig.truth is None:
        return Outcome(values, lines, drift)
    m, c = rig.truth.true_payload()
    bias = np.asarray(rig.truth.true_ft_bias())
    truth = [
        f"mass error {100 * abs(r.mass_kg / m - 1):.3f} % (target 2 %), centre of mass error "
        f"{1000 * np.linalg.norm(r.com_m - c):.2f} mm (target 5 mm)",
        f"bias error {np.linalg.norm(r.bias[:3] - bias[:3]):.4f} N, "
        f"{np.linalg.norm(r.bias[3:] - bias[3:]):.5f} N*m (injected {bias.round(3).tolist()})",
    ]
    return Outcome(values, lines, drift, truth)


def camera_name(entry: Any) -> str:
    """The MuJoCo camera a camera entry is: the scene camera for a ``scene*`` stream, else the
    wrist camera."""
    from mmrobot.envs import names

    stream = entry.stream.name or ""
    return names.SCENE_CAMERA if stream.startswith("scene") else names.WRIST_CAMERA


def _views(rig: ProcedureRig, entry: Any, n: int, seed: int) -> tuple[list[Any], str]:
    from mmrobot.calibrate.intrinsics import collect_board_views
    from mmrobot.calibrate.poses import camera_view_poses
    from mmrobot.envs import names

    camera = camera_name(entry)
    if camera != names.WRIST_CAMERA:
        raise ConfigError(
            f"entry {entry.name!r} is the scene camera; the calibration poses move an "
            "arm-mounted (wrist) camera over the board, so calibrate the wrist camera entry "
            "(eye-to-hand, the arm holding the board, is not built yet)"
        )
    poses = camera_view_poses(
        _checker(rig),
        lambda p, r, q0: rig.scene.solve_ik(p, r, q0=q0, iters=100),
        camera,
        rig.scene.home_qpos,
        np.asarray(rig.targets.board.center_m),
        n,
        seed=seed,
    )
    views, missed = collect_board_views(rig, camera, poses, rig.targets.board)
    return views, f"{len(views)} of {len(poses)} views show the board ({missed} missed)"


def _detection_picture(rig: ProcedureRig, view: Any, camera: str) -> np.ndarray:
    from mmrobot.calibrate.intrinsics import draw_detections

    rig.move_arm(view.joints)
    return draw_detections(rig.capture(camera), view.corners, view.ids)


def _intrinsics(rig: ProcedureRig, entry: Any, n: int, seed: int) -> Outcome:
    from mmrobot.calibrate.intrinsics import calibrate_intrinsics

    views, seen = _views(rig, entry, n, seed)
    r = calibrate_intrinsics(views, rig.targets.board)
    k = r.camera_matrix
    record = _record(r.n_views, {"rms_px": r.rms_px, "max_view_rms_px": float(r.per_view_rms_px.max())}, "cv2.calibrateCamera (ChArUco)")  # fmt: skip
    values = {
        "intrinsics": {
            "image_size": list(r.image_size),
            "camera_matrix": [[round(float(x), 4) for x in row] for row in k],
            "dist_coeffs": [round(float(x), 6) for x in r.dist_coeffs],
        },
        "calibration": _calibration(entry, "camera-intrinsics", record),
    }
    lines = [
        seen,
        f"fx {k[0, 0]:.2f} fy {k[1, 1]:.2f} cx {k[0, 2]:.2f} cy {k[1, 2]:.2f} px at "
        f"{r.image_size[0]}x{r.image_size[1]}; distortion {np.round(r.dist_coeffs, 5).tolist()}",
        f"reprojection error {r.rms_px:.3f} px RMS over {r.n_views} views",
    ]
    drift: dict[str, tuple[float, float]] = {}
    if entry.intrinsics is not None:
        old = np.asarray(entry.intrinsics.camera_matrix)
        drift["focal length (%)"] = (100 * abs(k[0, 0] / old[0, 0] - 1), 0.5)
        drift["principal point (px)"] = (float(np.hypot(*(k[:2, 2] - old[:2, 2]))), 3.0)
    else:
        drift["focal length (%)"] = (math.inf, 0.5)
    image = _detection_picture(rig, views[0], camera_name(entry))
    if rig.truth is None:
        return Outcome(values, lines, drift, [], image)
    kt = rig.truth.true_intrinsics(camera_name(entry))
    truth = [
        f"focal error fx {100 * (k[0, 0] / kt[0, 0] - 1):+.3f} % fy {100 * (k[1, 1] / kt[1, 1] - 1):+.3f} % "
        f"(target 0.5 %), principal point off by {np.hypot(*(k[:2, 2] - kt[:2, 2])):.2f} px"
    ]
    return Outcome(values, lines, drift, truth, image)


def _hand_eye(rig: ProcedureRig, entry: Any, n: int, seed: int) -> Outcome:
    from mmrobot.calibrate.hand_eye import calibrate_hand_eye

    if entry.intrinsics is None:
        raise ConfigError(
            f"entry {entry.name!r} has no `intrinsics`; hand-eye needs the camera model: run "
            "`mmrobot calibrate camera-intrinsics` first and pass its output rig file"
        )
    k = np.asarray(entry.intrinsics.camera_matrix, dtype=np.float64)
    dist = np.asarray(entry.intrinsics.dist_coeffs, dtype=np.float64)
    views, seen = _views(rig, entry, n, seed)
    if views and tuple(entry.intrinsics.image_size) != views[0].image_size:
        raise ConfigError(
            f"the intrinsics of {entry.name!r} are for {tuple(entry.intrinsics.image_size)} but "
            f"frames are {views[0].image_size}; calibrate the intrinsics at this resolution"
        )
    results = calibrate_hand_eye(views, rig.targets.board, rig.frames, k, dist)
    best = next(r for r in results if r.method == "park")
    x = best.camera_in_tcp
    residuals: dict[str, float] = {}
    lines = [seen]
    for r in results:
        residuals[f"{r.method}_rotation_deg"] = math.degrees(r.residual_rotation_rad)
        residuals[f"{r.method}_translation_mm"] = 1000 * r.residual_translation_m
        residuals[f"{r.method}_board_spread_mm"] = 1000 * r.board_spread_m
        t = r.camera_in_tcp[:3, 3] * 1000
        lines.append(
            f"{r.method:5s}: camera in TCP t = {np.round(t, 2).tolist()} mm, rpy = "
            f"{np.round(np.degrees(matrix_to_rpy(r.camera_in_tcp[:3, :3])), 3).tolist()} deg; "
            f"residual {math.degrees(r.residual_rotation_rad):.4f} deg, "
            f"{1000 * r.residual_translation_m:.3f} mm; board spread {1000 * r.board_spread_m:.3f} mm"
        )
    a, b = results[0].camera_in_tcp, results[1].camera_in_tcp
    lines.append(
        f"methods differ by {1000 * np.linalg.norm(a[:3, 3] - b[:3, 3]):.3f} mm, "
        f"{math.degrees(rotation_angle_rad(a[:3, :3], b[:3, :3])):.4f} deg; writing park"
    )
    values = {
        "extrinsics": {
            "translation_m": [round(float(v), 6) for v in x[:3, 3]],
            "rotation_rpy_rad": [round(float(v), 6) for v in matrix_to_rpy(x[:3, :3])],
            "parent_frame": "tcp",
        },
        "calibration": _calibration(
            entry, "hand-eye", _record(best.n_views, residuals, "Park-Martin (Tsai-Lenz compared)")
        ),
    }
    ex = entry.extrinsics
    if ex.parent_frame == "tcp":
        old_r = rpy_to_matrix(ex.rotation_rpy_rad)
        drift = {
            "translation (mm)": (1000 * float(np.linalg.norm(x[:3, 3] - ex.translation_m)), 2.0),
            "rotation (deg)": (math.degrees(rotation_angle_rad(old_r, x[:3, :3])), 0.3),
        }
    else:
        drift = {"translation (mm)": (math.inf, 2.0)}
    image = _detection_picture(rig, views[0], camera_name(entry))
    if rig.truth is None:
        return Outcome(values, lines, drift, [], image)
    xt = rig.truth.true_camera_in_tcp(camera_name(entry))
    truth = [
        f"{r.method}: error {1000 * np.linalg.norm(r.camera_in_tcp[:3, 3] - xt[:3, 3]):.3f} mm, "
        f"{math.degrees(rotation_angle_rad(r.camera_in_tcp[:3, :3], xt[:3, :3])):.4f} deg "
        "(targets 2 mm, 0.3 deg)"
        for r in results
    ]
    return Outcome(values, lines, drift, truth, image)


def _lidar(rig: ProcedureRig, entry: Any, n: int) -> Outcome:
    from mmrobot.calibrate.lidar import collect_scans, fit_lidar_to_box

    ex = entry.extrinsics
    roll, pitch, yaw = ex.rotation_rpy_rad
    scans = collect_scans(rig, n)
    r = fit_lidar_to_box(scans, rig.targets.box.outline(), np.asarray(ex.translation_m[:2]), yaw)
    record = _record(r.n_scans, {"rms_m": r.residual_m, "points": float(r.n_points)}, "point-to-line ICP on a box")  # fmt: skip
    values = {
        "extrinsics": {
            "translation_m": [round(float(r.xy_m[0]), 5), round(float(r.xy_m[1]), 5), ex.translation_m[2]],
            "rotation_rpy_rad": [roll, pitch, round(r.yaw_rad, 6)],
        },
        "calibration": _calibration(entry, "lidar", record),
    }  # fmt: skip
    lines = [
        f"lidar at x {1000 * r.xy_m[0]:.1f} mm, y {1000 * r.xy_m[1]:.1f} mm, yaw "
        f"{math.degrees(r.yaw_rad):.3f} deg (height, roll, pitch kept from the rig file)",
        f"residual {1000 * r.residual_m:.2f} mm RMS, {r.n_points} points on {r.faces} faces "
        f"from {r.n_scans} scans",
    ]
    dyaw = math.degrees(math.remainder(r.yaw_rad - yaw, 2 * math.pi))
    drift = {
        "translation (mm)": (1000 * float(np.linalg.norm(r.xy_m - ex.translation_m[:2])), 5.0),
        "yaw (deg)": (abs(dyaw), 0.5),
    }
    if rig.truth is None:
        return Outcome(values, lines, drift)
    t = rig.truth.true_lidar_pose()
    truth = [
        f"error {1000 * np.linalg.norm(r.xy_m - t[:2, 3]):.2f} mm, "
        f"{abs(math.degrees(math.remainder(r.yaw_rad - matrix_to_rpy(t[:3, :3])[2], 2 * math.pi))):.3f} deg "
        "(targets 5 mm, 0.5 deg)"
    ]
    return Outcome(values, lines, drift, truth)
