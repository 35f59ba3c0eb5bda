"""Launch: launch files that compose a robot or a simulation, a policy and the control loop
(``mmrobot launch``, ``mmrobot run``), the hardware-in-the-loop rig (``mmrobot hil``), and
machine checks (``mmrobot doctor``). Heavy modules load on first use."""

from __future__ import annotations

import importlib
from typing import Any

from mmrobot.launch.schema import LaunchFile, load_launch

__all__ = [
    "HilRig",
    "LaunchFile",
    "RobotSession",
    "SimSession",
    "StopRequest",
    "load_launch",
    "run_instructions",
]

_LAZY = {
    "HilRig": "mmrobot.launch.hil",
    "RobotSession": "mmrobot.launch.robot",
    "SimSession": "mmrobot.launch.sim",
    "StopRequest": "mmrobot.launch.runner",
    "run_instructions": "mmrobot.launch.runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmrobot.launch' has no attribute {name!r}")
