"""Spatial calibration: F/T payload and bias, camera intrinsics, hand-eye, lidar-to-base.

Each procedure drives a :class:`~mmrobot.calibrate.base.CalibrationRig` (the simulation's
:class:`~mmrobot.calibrate.sim.SimCalibrationRig`, or a rig file's real drivers) through
generated poses and fits its parameters; ``mmrobot calibrate KIND RIG`` writes the result
into a copy of the rig file. Importing this package imports numpy only; mujoco and cv2 are
imported by the modules that use them.
"""

from __future__ import annotations

from mmrobot.calibrate.ft_payload import (
    FtPayloadResult,
    fit_ft_payload,
    measure_ft_payload,
    payload_wrench,
)

__all__ = [
    "FtPayloadResult",
    "fit_ft_payload",
    "measure_ft_payload",
    "payload_wrench",
]
