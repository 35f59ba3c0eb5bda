"""Sensor drivers, actuators, rig files and device emulators.

``Driver`` and ``Actuator`` are the interfaces; each device kind is registered under the
``kind`` string that rig files use. Heavy or optional dependencies (OpenCV, Open3D, pyserial)
are imported by the modules that need them, when they are used.
"""

from mmrobot.drivers.base import Actuator, Driver
from mmrobot.drivers.camera import CameraDriver
from mmrobot.drivers.config_models import ActuatorConfig, DriverConfig, Extrinsics, StreamConfig
from mmrobot.drivers.dynamixel import DynamixelActuator, DynamixelBus, DynamixelDriver
from mmrobot.drivers.ft300 import FT300Driver
from mmrobot.drivers.health import DriverStats, Health
from mmrobot.drivers.lidar import LD06Driver, RplidarDriver, scan_to_points
from mmrobot.drivers.registry import (
    actuator_kinds,
    driver_kinds,
    get_actuator_class,
    get_driver_class,
    register_actuator,
    register_driver,
)
from mmrobot.drivers.rig import Rig, load_rig, parse_rig

__all__ = [
    "Actuator",
    "ActuatorConfig",
    "CameraDriver",
    "Driver",
    "DriverConfig",
    "DriverStats",
    "DynamixelActuator",
    "DynamixelBus",
    "DynamixelDriver",
    "Extrinsics",
    "FT300Driver",
    "Health",
    "LD06Driver",
    "Rig",
    "RplidarDriver",
    "StreamConfig",
    "actuator_kinds",
    "driver_kinds",
    "get_actuator_class",
    "get_driver_class",
    "load_rig",
    "parse_rig",
    "register_actuator",
    "register_driver",
    "scan_to_points",
]
