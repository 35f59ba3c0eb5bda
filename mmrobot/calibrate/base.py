"""What a calibration procedure needs from a rig, simulated or real."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

__all__ = ["CalibrationRig", "GroundTruth", "ProcedureRig"]


class CalibrationRig(Protocol):
    """A robot that calibration procedures drive: :class:`~mmrobot.calibrate.sim.SimCalibrationRig`
    in simulation, :class:`~mmrobot.calibrate.devices.DeviceCalibrationRig` over a rig file's
    drivers (a real robot or the HIL rig)."""

    @property
    def joint_range(self) -> np.ndarray:
        """(6, 2) the arm joint limits the poses must stay within, rad."""
        ...

    def move_arm(self, q: np.ndarray) -> None:
        """Move to joint angles (6,) and return once the arm is at rest."""
        ...

    def read_joints(self) -> np.ndarray:
        """(6,) measured joint angles, rad."""
        ...

    def read_wrench(self, n_samples: int = 50) -> np.ndarray:
        """(n_samples, 6) consecutive raw F/T samples, sensor frame."""
        ...

    def capture(self, camera: str) -> np.ndarray:
        """(H, W, 3) uint8 frame of a camera at its capture resolution."""
        ...

    def scan(self) -> np.ndarray:
        """(N, 2) one lidar turn in the lidar's own frame, metres; NaN where no return."""
        ...


class GroundTruth(Protocol):
    """The true values a simulated rig (or the HIL rig's simulation) knows."""

    def true_ft_bias(self) -> np.ndarray:
        """(6,) the F/T sensor's bias."""
        ...

    def true_payload(self) -> tuple[float, np.ndarray]:
        """The payload's mass (kg) and centre of mass (3,) in the sensor frame."""
        ...

    def true_intrinsics(self, camera: str) -> np.ndarray:
        """(3, 3) the camera matrix at the capture resolution."""
        ...

    def true_camera_in_tcp(self, camera: str) -> np.ndarray:
        """(4, 4) the camera's OpenCV frame in the TCP frame."""
        ...

    def true_lidar_pose(self) -> np.ndarray:
        """(4, 4) the lidar frame in the base frame."""
        ...


class ProcedureRig(CalibrationRig, Protocol):
    """What ``mmrobot calibrate`` runs a procedure on: a :class:`CalibrationRig` with the arm's
    kinematic model and the targets' known poses.

    Attributes:
        scene: :class:`~mmrobot.envs.scene.Scene` of the calibration scene (kinematics, IK and
            the pose checks only; on a device rig no physics is stepped).
        frames: :class:`~mmrobot.calibrate.kinematics.ArmFrames` of that model.
        targets: :class:`~mmrobot.calibrate.targets.CalibrationScene`, the board and the box.
        truth: ground truth to report errors against, or None (a real robot).
    """

    scene: Any
    frames: Any
    targets: Any

    @property
    def truth(self) -> GroundTruth | None: ...
