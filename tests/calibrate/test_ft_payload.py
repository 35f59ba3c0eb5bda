"""ft-payload: bias, mass and centre of mass against the simulation's ground truth, and the
F/T driver's gravity compensation through the real serial driver and the FT 300 emulator."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mmrobot.calibrate._geometry import rpy_to_matrix
from mmrobot.calibrate.ft_payload import fit_ft_payload, measure_ft_payload, payload_wrench
from mmrobot.calibrate.poses import PoseChecker, ft_payload_poses
from mmrobot.calibrate.sim import SimCalibrationRig, SimNoise
from mmrobot.core.errors import ConfigError
from mmrobot.drivers import parse_rig
from mmrobot.drivers.emulators import FT300Emulator

# FT 300 datasheet-sized noise (the simulated sensor's default is noise-free)
NOISE = dict(ft_force_n=0.1, ft_torque_nm=0.005)
BIAS = np.array([1.5, -0.8, 2.0, 0.05, -0.03, 0.02])


@pytest.mark.parametrize("seed", [1, 2])
def test_ft_payload_meets_the_targets_in_six_poses(calibration_scene, seed):
    with SimCalibrationRig(
        calibration_scene, SimNoise(**NOISE, ft_bias=tuple(BIAS), seed=seed)
    ) as rig:
        checker = PoseChecker(rig.scene.model, rig.joint_range)
        poses = ft_payload_poses(checker, rig.scene.home_qpos, 6, seed=seed)
        for q in poses:
            assert checker.ok(q)
        result = measure_ft_payload(rig, rig.frames, poses, samples_per_pose=50)
        mass, com = rig.true_payload()
    assert result.n_poses == 6
    # targets of issue 17: bias within 2 %, mass within 2 %, centre of mass within 5 mm
    assert np.linalg.norm(result.bias[:3] - BIAS[:3]) <= 0.02 * np.linalg.norm(BIAS[:3])
    assert np.linalg.norm(result.bias[3:] - BIAS[3:]) <= 0.02 * np.linalg.norm(BIAS[3:])
    assert abs(result.mass_kg - mass) <= 0.02 * mass
    assert np.linalg.norm(result.com_m - com) <= 0.005
    assert 0.18 < mass < 0.26 and 0.03 < com[2] < 0.04  # the hand and fingers, as modelled
    # residuals: the injected noise averaged over 50 samples, nothing systematic
    assert result.residual_force_n < 0.05 and result.residual_torque_nm < 0.003


def test_fit_recovers_exact_values_and_refuses_flat_pose_sets():
    rng = np.random.default_rng(0)
    rots = np.array([rpy_to_matrix(rng.uniform(-np.pi, np.pi, 3)) for _ in range(5)])
    mass, com = 0.8, np.array([0.01, -0.02, 0.06])
    w = np.array([payload_wrench(r, mass, com) for r in rots]) + BIAS
    fit = fit_ft_payload(rots, w)
    assert fit.mass_kg == pytest.approx(mass, rel=1e-9)
    assert fit.com_m == pytest.approx(com, abs=1e-9)
    assert fit.bias == pytest.approx(BIAS, abs=1e-9)
    # every pose the same tilt about z only: gravity is seen along one direction
    flat = np.array([rpy_to_matrix((0.0, 0.0, a)) for a in np.linspace(0, 3, 6)])
    with pytest.raises(ConfigError, match="tilt the sensor too little"):
        fit_ft_payload(flat, np.zeros((6, 6)))
    with pytest.raises(ConfigError, match="at least 4 static poses"):
        fit_ft_payload(rots[:3], w[:3])
    with pytest.raises(ConfigError, match="not positive"):
        fit_ft_payload(rots, -w)


def test_tare_on_open_and_payload_together_are_refused():
    entry = dict(kind="ft300", name="wrist_ft", port="/dev/null", tare_on_open=True)
    entry["payload"] = {"mass_kg": 0.3, "com_m": [0, 0, 0.04]}
    with pytest.raises(ConfigError, match="tare_on_open = false"):
        parse_rig({"driver": [entry]}, source="drivers/ft.toml")


def _mean_of_next(drv, n):
    start = drv.stats.samples
    assert drv.wait_for_samples(start + n, timeout_s=5.0)
    _, values = drv.buffers["ft"].window(-(2**62), 2**62)
    return values[-n:].astype(np.float64).mean(axis=0)


def test_driver_gravity_compensation_reads_contact_forces_only(tmp_path):
    mass, com = 0.22, np.array([0.0, 0.0, 0.035])
    r1 = rpy_to_matrix((0.4, -1.1, 0.3))
    r2 = rpy_to_matrix((2.0, 0.5, -1.0))
    with FT300Emulator(tuple(payload_wrench(r1, mass, com) + BIAS), link=tmp_path / "ft") as emu:
        entry = dict(kind="ft300", name="wrist_ft", port=emu.port, bias=BIAS.tolist())
        entry["payload"] = {"mass_kg": mass, "com_m": com.tolist()}
        (drv,) = parse_rig({"driver": [entry]}, source="drivers/ft.toml").build_drivers()
        with drv:
            time.sleep(0.15)
            assert drv.stats.samples == 0  # no orientation yet: nothing is published
            assert "set_sensor_rotation" in drv.stats.last_error
            drv.set_sensor_rotation(r1)
            assert _mean_of_next(drv, 10) == pytest.approx(np.zeros(6), abs=0.011)
            # turned, and pushed with 3 N along x: only the push remains
            emu.set_wrench(tuple(payload_wrench(r2, mass, com) + BIAS + [3.0, 0, 0, 0, 0, 0]))
            drv.set_sensor_rotation(r2)
            time.sleep(0.1)
            assert _mean_of_next(drv, 10) == pytest.approx([3.0, 0, 0, 0, 0, 0], abs=0.011)
