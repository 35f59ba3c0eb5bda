"""Opening serial ports with errors that say what to do, and the serial driver config."""

from __future__ import annotations

import errno
import os
from typing import Any

from pydantic import Field

from mmrobot.core.deps import require
from mmrobot.core.errors import DeviceNotConnectedError
from mmrobot.drivers.config_models import DriverConfig
from mmrobot.drivers.health import is_port_failure

# is_port_failure lives in drivers/health.py (the Driver's reconnect logic needs it too) and
# is re-exported here for the serial drivers.
__all__ = ["SerialDriverConfig", "is_port_failure", "open_serial", "set_dtr"]


class SerialDriverConfig(DriverConfig):
    """A driver on a serial port (USB-serial adapter or pseudo-terminal)."""

    port: str
    baud_rate: int = Field(default=115200, gt=0)
    read_timeout_s: float = Field(default=0.05, gt=0)


def open_serial(
    port: str, baud_rate: int, *, timeout_s: float, source: str = "your rig file"
) -> Any:
    """Open ``port`` with pyserial (8N1, raw); clear errors for a missing port or no permission.

    Raises:
        DeviceNotConnectedError: the port does not exist, is not accessible, or fails to open.
    """
    serial = require("serial", "serial drivers")
    if not os.path.exists(port):
        raise DeviceNotConnectedError(
            f"port {port!r} not found; plug the device in or set `port` in {source} "
            "(list ports with `python -m serial.tools.list_ports`)"
        )
    try:
        ser = serial.Serial()
        ser.port = port
        ser.baudrate = baud_rate
        ser.timeout = timeout_s
        ser.write_timeout = 1.0
        ser.open()
    except (OSError, serial.SerialException) as e:
        code = getattr(e, "errno", None)
        text = str(e)
        if code == errno.EACCES or "Permission denied" in text:
            raise DeviceNotConnectedError(
                f"permission denied opening port {port!r}; add your user to the port's group "
                "(`sudo usermod -aG dialout $USER`, then log in again) or fix the udev rule"
            ) from e
        if code == errno.ENOENT or "No such file" in text:
            raise DeviceNotConnectedError(
                f"port {port!r} not found; plug the device in or set `port` in {source}"
            ) from e
        if code == errno.EBUSY or "busy" in text.lower():
            raise DeviceNotConnectedError(
                f"port {port!r} is busy; close the other program using it (`fuser {port}`)"
            ) from e
        raise DeviceNotConnectedError(
            f"cannot open port {port!r}: {e}; check the cable and `port` in {source}"
        ) from e
    return ser


def set_dtr(ser: Any, value: bool) -> bool:
    """Set DTR; False when the port does not support modem control (a pseudo-terminal)."""
    try:
        ser.dtr = value
    except Exception:  # termios/ioctl refusal on a pty: treated as "not supported"
        return False
    return True
