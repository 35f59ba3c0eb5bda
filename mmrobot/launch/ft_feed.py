"""Gravity-compensated F/T drivers get the sensor's orientation from the arm's joint readings.

Used by :class:`~mmrobot.launch.robot.RobotSession` (and importable from there). The feed, the
F/T driver and the joints driver share one process: with ``loop.driver_worker = "process"``
an F/T driver with ``payload`` stays in the loop's process for that reason
(:func:`~mmrobot.drivers.host.hostable_drivers`).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["FtOrientationFeed"]


class FtOrientationFeed:
    """Gives gravity-compensated F/T drivers their orientation from the joint readings.

    An FT 300 entry with ``payload`` subtracts the payload's weight at the sensor's current
    orientation and publishes nothing until it knows it
    (:meth:`~mmrobot.drivers.ft300.FT300Driver.set_sensor_rotation`). A thread follows the
    joints driver's newest reading and passes on the forward kinematics of the sensor site
    (the arm model's ``ft_force`` sensor), so the compensation lags the arm by at most one
    joint reading (5 ms at 200 Hz) plus ``period_s``.

    Args:
        ft_drivers: the F/T drivers to feed.
        joints: the driver of the arm's joints stream (arm angles first, rad).
        model: the arm's ``mujoco.MjModel`` (names of :mod:`mmrobot.envs.names`).
        period_s: how often the thread looks for a new joint reading.
    """

    def __init__(
        self, ft_drivers: list[Any], joints: Any, model: Any, period_s: float = 0.002
    ) -> None:
        from mmrobot.calibrate.kinematics import ArmFrames

        self.frames = ArmFrames(model)
        self.frames.ft_sensor(np.zeros(6))  # a model without the sensor fails here, not later
        self.ft_drivers = list(ft_drivers)
        self.joints = joints
        self.period_s = period_s
        self.updates = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self) -> bool:
        """Pass on the newest joint reading's sensor orientation; False when there is none."""
        latest = self.joints.latest()
        if latest is None:
            return False
        rotation = self.frames.ft_sensor(np.asarray(latest[1][:6], np.float64))[:3, :3]
        for d in self.ft_drivers:
            d.set_sensor_rotation(rotation)
        self.updates += 1
        return True

    def _run(self) -> None:
        last_t: int | None = None
        while not self._stop.wait(self.period_s):
            try:
                latest = self.joints.latest()
                if latest is not None and latest[0] != last_t:
                    last_t = latest[0]
                    self.update()
            except Exception as e:  # a closed driver or a bad reading: keep the reason, retry
                self.last_error = f"{type(e).__name__}: {e}"

    def start(self) -> FtOrientationFeed:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ft-orientation", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
