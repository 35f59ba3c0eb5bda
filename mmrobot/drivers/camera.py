"""Cameras through OpenCV ``VideoCapture``: a device index, a video file or a stream URL.

Spec: OpenCV 4.x documentation, ``cv::VideoCapture`` (``read``, ``set(CAP_PROP_FRAME_WIDTH |
CAP_PROP_FRAME_HEIGHT | CAP_PROP_FPS)``) and ``cv::cvtColor`` (``COLOR_BGR2RGB``): OpenCV
returns frames as BGR ``uint8`` (H, W, 3); on Linux a device index N is ``/dev/videoN`` (V4L2).

The reader thread grabs frames as they come, keeps the latest full-resolution frame
(:meth:`CameraDriver.latest_frame`), converts it to RGB, resizes it to the stream's shape
(``INTER_AREA``) and pushes it stamped ``capture time - latency_ms`` (exposure + transport,
from the rig file). A file is read at ``fps`` (real time) unless ``pace = false`` and can
``loop``; at its end without ``loop`` the stream simply stops (``finished``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import numpy as np
from pydantic import Field

from mmrobot.core.deps import require
from mmrobot.core.errors import DeviceNotConnectedError
from mmrobot.drivers.base import Driver, DriverConfig, register_driver
from mmrobot.drivers.config_models import CameraIntrinsics

__all__ = ["CameraConfig", "CameraDriver"]


class CameraConfig(DriverConfig):
    """Rig entry of ``kind = "camera"``.

    ``device``: an int (V4L2 index), a file path, or a URL (``rtsp://``, ``http://``).
    ``width``/``height``/``fps``: requested capture mode (devices; files keep theirs).
    ``intrinsics``: the pinhole model at the capture resolution (``mmrobot calibrate
    camera-intrinsics``); frames are published unchanged, it documents the camera.
    """

    device: int | str
    width: int | None = Field(default=None, gt=0)
    height: int | None = Field(default=None, gt=0)
    fps: float = Field(default=30.0, gt=0)
    loop: bool = False
    pace: bool = True
    fourcc: str | None = Field(default=None, min_length=4, max_length=4)
    intrinsics: CameraIntrinsics | None = None


def _is_url(device: int | str) -> bool:
    return isinstance(device, str) and "://" in device


@register_driver("camera")
class CameraDriver(Driver):
    """RGB frames ``(H, W, 3) uint8`` of the stream's shape (default ``scene_cam`` 96x96)."""

    Config = CameraConfig
    config: CameraConfig

    def __init__(self, config: CameraConfig, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._cv2: Any = None
        self._cap: Any = None
        self._latest: np.ndarray | None = None
        self._latest_lock = threading.Lock()
        self._next_frame_s = 0.0
        self.finished = False
        self.frames_read = 0

    def _stream_defaults(self) -> list[dict[str, Any]]:
        return [
            dict(
                name="scene_cam",
                modality="camera",
                shape=(96, 96, 3),
                dtype="uint8",
                rate_hz=float(self.config.fps),
                policy="causal",
                max_age_ns=100_000_000,
            )
        ]

    @property
    def is_file(self) -> bool:
        d = self.config.device
        return isinstance(d, str) and not _is_url(d) and not d.startswith("/dev/")

    def latest_frame(self) -> np.ndarray | None:
        """The newest captured frame at full resolution, RGB ``(H, W, 3) uint8`` (a copy)."""
        self._require_open("latest_frame()")
        with self._latest_lock:
            return None if self._latest is None else self._latest.copy()

    def _connect(self) -> None:
        cv2 = require("cv2", "the camera driver")
        self._cv2 = cv2
        c = self.config
        d = c.device
        if isinstance(d, int):
            path = f"/dev/video{d}"
            if os.name == "posix" and not os.path.exists(path):
                raise DeviceNotConnectedError(
                    f"camera index {d} not found ({path} does not exist); plug the camera in or set "
                    f"`device` in {self.source} (list cameras with `v4l2-ctl --list-devices`)"
                )
        elif self.is_file and not os.path.isfile(d):
            raise DeviceNotConnectedError(
                f"video file {d!r} not found; fix `device` in {self.source}"
            )
        cap = cv2.VideoCapture(d)
        if not cap.isOpened():
            cap.release()
            raise DeviceNotConnectedError(
                f"OpenCV could not open camera {d!r}; check the device, its permissions "
                f"(`sudo usermod -aG video $USER`) or the URL, and `device` in {self.source}"
            )
        if not self.is_file:
            if c.fourcc:
                cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*c.fourcc))
            if c.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, c.width)
            if c.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, c.height)
            cap.set(cv2.CAP_PROP_FPS, c.fps)
        self._cap = cap
        self._next_frame_s = time.monotonic()
        self.finished = False

    def _disconnect(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def _poll(self) -> None:
        cap = self._cap
        if cap is None:
            raise DeviceNotConnectedError(f"camera {self.config.device!r} is not connected")
        if self.finished:
            self._stop.wait(0.05)
            return
        if self.is_file and self.config.pace:
            delay = self._next_frame_s - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            # after a stall, play on from now (a camera drops frames; it never bursts old ones)
            self._next_frame_s = max(self._next_frame_s + 1.0 / self.config.fps, time.monotonic())
        ok, frame = cap.read()
        t_ns = self.clock.now_ns()
        if not ok or frame is None:
            if self.is_file:
                if self.config.loop:
                    cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
                else:
                    self.finished = True
                return
            raise DeviceNotConnectedError(
                f"camera {self.config.device!r} stopped delivering frames"
            )
        self.frames_read += 1
        self._c.frames += 1
        self._c.bytes += frame.nbytes
        cv2 = self._cv2
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        with self._latest_lock:
            self._latest = rgb
        h, w = self._specs[0].shape[:2]
        small = (
            rgb
            if rgb.shape[:2] == (h, w)
            else cv2.resize(rgb, (w, h), interpolation=cv2.INTER_AREA)
        )
        if self._specs[0].shape[2:] == (1,):
            small = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)[..., None]
        self._push(0, t_ns - self._specs[0].latency_ns, small)
