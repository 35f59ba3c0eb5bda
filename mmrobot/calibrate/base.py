"""What a calibration procedure needs from a rig, simulated or real."""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["CalibrationRig"]


class CalibrationRig(Protocol):
    """A robot that calibration procedures drive: :class:`~mmrobot.calibrate.sim.SimCalibrationRig`
    in simulation; an adapter over a rig file's drivers (a real robot or the HIL rig) is not
    built yet (docs/calibration.md)."""

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
