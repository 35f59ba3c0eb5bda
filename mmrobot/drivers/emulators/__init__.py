"""Device emulators: the device side of each supported wire protocol, on a pseudo-terminal.

Used by the tests, the benchmarks and ``mmrobot emulate KIND``; each runs a small physical
model so the data a driver decodes is checkable against ground truth.
"""

from mmrobot.drivers.emulators.base import PtyEmulator, inject_faults
from mmrobot.drivers.emulators.dynamixel import DynamixelEmulator, VirtualServo
from mmrobot.drivers.emulators.ft300 import FT300Emulator
from mmrobot.drivers.emulators.ld06 import LD06Emulator
from mmrobot.drivers.emulators.room import Room
from mmrobot.drivers.emulators.rplidar import RplidarEmulator

__all__ = [
    "DynamixelEmulator",
    "FT300Emulator",
    "LD06Emulator",
    "Room",
    "RplidarEmulator",
    "PtyEmulator",
    "VirtualServo",
    "inject_faults",
]
