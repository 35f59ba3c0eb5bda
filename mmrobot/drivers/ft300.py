"""Robotiq FT 300 force/torque sensor over serial (data-stream mode), with tare/bias.

Spec: Robotiq "FT 300 Force Torque Sensor Instruction Manual", section 4.4 "Serial
Communication" (Modbus RTU write that starts the stream; 16-byte frames of six int16 values
with CRC-16/MODBUS; forces in 1/100 N, moments in 1/1000 N*m). Frame coding lives in
:mod:`mmrobot.drivers.protocols.ft300`.

The sensor has no clock of its own: a frame is stamped with its host receive time minus the
stream's ``latency_ms``; frames that arrive in one read are spread back from the receive time
at the nominal 100 Hz period, the order they were measured in.

Gravity compensation (``payload = { mass_kg = ..., com_m = [...] }``, measured with
``mmrobot calibrate ft-payload``): the payload's static weight at the sensor's current
orientation is subtracted too, so the stream reads contact forces only. The driver has no
orientation of its own; whoever owns the arm's joint readings calls
:meth:`FT300Driver.set_sensor_rotation` with the forward kinematics of each reading. Until
the first call no frame is published (a reading that still holds the payload's weight is
not a contact force), and the driver's last error says so.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from mmrobot.core.errors import DeviceNotConnectedError, DeviceTimeoutError
from mmrobot.drivers._serial import SerialDriverConfig, open_serial
from mmrobot.drivers.base import Driver, register_driver
from mmrobot.drivers.config_models import RigModel
from mmrobot.drivers.protocols.ft300 import (
    FT300_SLAVE_ID,
    STOP_STREAM,
    FrameDecoder,
    start_stream_request,
)

__all__ = ["FT300Config", "FT300Driver", "PayloadConfig"]


class PayloadConfig(RigModel):
    """The tool the sensor carries, for gravity compensation (``mmrobot calibrate ft-payload``).

    ``com_m`` is the centre of mass in the sensor frame. The payload's weight reads as
    ``-mass * R.T @ g`` (the wrench the sensor exerts on what it carries, MuJoCo's sign).
    """

    mass_kg: float = Field(gt=0)
    com_m: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gravity_m_s2: tuple[float, float, float] = (0.0, 0.0, -9.81)


class FT300Config(SerialDriverConfig):
    """Rig entry of ``kind = "ft300"``."""

    baud_rate: int = Field(default=19200, gt=0)
    slave_id: int = Field(default=FT300_SLAVE_ID, ge=1, le=247)
    bias: tuple[float, float, float, float, float, float] = (0.0,) * 6
    tare_on_open: bool = False
    tare_samples: int = Field(default=50, ge=1)
    start_timeout_s: float = Field(default=1.0, gt=0)
    payload: PayloadConfig | None = None

    @model_validator(mode="after")
    def _tare_or_payload(self) -> FT300Config:
        if self.payload is not None and self.tare_on_open:
            raise ValueError(
                "tare_on_open = true would take the payload's weight at start-up into the bias, "
                "but `payload` compensates it separately; set tare_on_open = false and use the "
                "calibrated `bias` (mmrobot calibrate ft-payload writes both)"
            )
        return self


@register_driver("ft300")
class FT300Driver(Driver):
    """One ``(6,) float32`` stream ``ft``: [fx, fy, fz (N), tx, ty, tz (N*m)] minus the bias.

    The wrench is reported in the sensor frame; ``extrinsics`` documents the sensor's pose.
    """

    Config = FT300Config
    config: FT300Config

    def __init__(self, config: FT300Config, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self.decoder = FrameDecoder()
        self._bias = np.asarray(config.bias, dtype=np.float64)
        self._bias_lock = threading.Lock()
        self._ser: Any = None
        self._last_t_ns = -(2**62)
        self._rotation: np.ndarray | None = None  # sensor -> base, for gravity compensation

    def _stream_defaults(self) -> list[dict[str, Any]]:
        return [
            dict(
                name="ft",
                modality="force",
                shape=(6,),
                dtype="float32",
                rate_hz=100.0,
                policy="interp",
                max_age_ns=50_000_000,
                history=10,
            )
        ]

    @property
    def bias(self) -> np.ndarray:
        """(6,) bias subtracted from every frame."""
        with self._bias_lock:
            return self._bias.copy()

    def set_bias(self, bias: np.ndarray) -> None:
        b = np.asarray(bias, dtype=np.float64)
        if b.shape != (6,) or not np.all(np.isfinite(b)):
            raise ValueError(f"bias must be 6 finite values, got {bias!r}")
        with self._bias_lock:
            self._bias = b

    def set_sensor_rotation(self, rotation: np.ndarray) -> None:
        """The sensor's current orientation (3, 3), sensor -> base, for gravity compensation.

        Call it with the forward kinematics of each joint reading; without ``payload`` in
        the rig entry it is stored and unused.
        """
        r = np.asarray(rotation, dtype=np.float64)
        if r.shape != (3, 3) or not np.isfinite(r).all():
            raise ValueError(f"sensor rotation must be a finite (3, 3) matrix, got {rotation!r}")
        with self._bias_lock:
            self._rotation = r.copy()

    def gravity_wrench(self) -> np.ndarray | None:
        """(6,) the payload's weight at the current orientation (what compensation subtracts);
        zeros without ``payload``, None while the orientation is unknown."""
        p = self.config.payload
        if p is None:
            return np.zeros(6)
        with self._bias_lock:
            r = self._rotation
        if r is None:
            return None
        force = -p.mass_kg * (r.T @ np.asarray(p.gravity_m_s2))
        return np.concatenate([force, np.cross(np.asarray(p.com_m), force)])

    def tare(self, n_samples: int | None = None, timeout_s: float = 2.0) -> np.ndarray:
        """Average the next ``n_samples`` raw frames and make that the bias; returns it.

        Raises:
            DeviceTimeoutError: fewer frames than asked arrived within ``timeout_s``.
        """
        self._require_open("tare()")
        n = n_samples or self.config.tare_samples
        buf = self._buffers[self._specs[0].name]
        start = self._c.samples
        if not self.wait_for_samples(start + n, timeout_s):
            raise DeviceTimeoutError(
                f"FT 300 on {self.config.port!r}: only {self._c.samples - start} of {n} frames "
                f"for tare arrived in {timeout_s} s"
            )
        times, values = buf.window(-(2**62), 2**62)
        old = self.bias
        new = values[-n:].astype(np.float64).mean(axis=0) + old
        self.set_bias(new)
        return new

    def _connect(self) -> None:
        c = self.config
        ser = open_serial(c.port, c.baud_rate, timeout_s=c.read_timeout_s, source=self.source)
        try:
            ser.write(STOP_STREAM)  # leave a stream the sensor may still be in
            ser.flush()
            time.sleep(0.02)
            ser.reset_input_buffer()
            request = start_stream_request(c.slave_id)
            ser.write(request)
            echo = request[:6]
            got = bytearray()
            deadline = time.monotonic() + c.start_timeout_s
            self.decoder.reset()  # counters accumulate across reconnects
            while time.monotonic() < deadline:
                got += ser.read(max(1, ser.in_waiting))
                i = got.find(echo)
                if i >= 0 and len(got) >= i + 8:
                    self.decoder.feed(bytes(got[i + 8 :]))
                    break
                if len(got) > 64 and self.decoder.feed(bytes(got)):
                    break  # already streaming
            else:
                raise DeviceTimeoutError(
                    f"FT 300 on {c.port!r} did not answer the start-stream request (slave id "
                    f"{c.slave_id}, {c.baud_rate} baud); check power, wiring and `baud_rate` in {self.source}"
                )
        except BaseException:
            ser.close()
            raise
        self._ser = ser

    def open(self) -> FT300Driver:
        super().open()
        if self.config.tare_on_open:
            try:
                self.set_bias(np.zeros(6))
                self.tare()
            except BaseException:
                self.close()
                raise
        return self

    def _disconnect(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(Exception):
                ser.write(STOP_STREAM)
            with contextlib.suppress(Exception):
                ser.close()

    def _poll(self) -> None:
        ser = self._ser
        if ser is None:
            raise DeviceNotConnectedError(f"FT 300 on {self.config.port!r} is not connected")
        data = ser.read(max(16, ser.in_waiting))
        if not data:
            return
        host_ns = self.clock.now_ns()
        self._c.bytes += len(data)
        d = self.decoder
        frames = d.feed(data)
        self._c.frames, self._c.checksum_errors, self._c.resyncs = (
            d.frames,
            d.checksum_errors,
            d.resyncs,
        )
        if not frames:
            return
        period = self._specs[0].period_ns
        t_last = host_ns - self._specs[0].latency_ns
        bias = self.bias
        gravity = self.gravity_wrench()
        if gravity is None:
            self._c.last_error = (
                "gravity compensation is on (`payload`) but no sensor orientation has been "
                "given; call set_sensor_rotation() with the arm's forward kinematics"
            )
            return
        bias = bias + gravity
        n = len(frames)
        # Frames of one read were measured one period apart, the newest just now. After a
        # stalled read that would reach back before the previous stamp: then they are spread
        # evenly between the previous stamp and now instead.
        first = t_last - (n - 1) * period
        step = period
        if first <= self._last_t_ns:
            step = (t_last - self._last_t_ns) / n
            first = self._last_t_ns + step
        for k, w in enumerate(frames):
            t_ns = round(first + k * step)
            if t_ns > self._last_t_ns and self._push(0, t_ns, (w - bias).astype(np.float32)):
                self._last_t_ns = t_ns
