"""Lazy imports of heavy or optional dependencies, with an install hint when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from mmrobot.core.errors import DependencyNotInstalled

__all__ = ["require"]

# module name -> what to install; system-library hints where a wheel needs one.
_HINTS = {
    "torch": "pip install torch (on this project's CPU machines: pip install torch==2.13.0)",
    "mujoco": "pip install mujoco",
    "open3d": "pip install open3d; its wheel also needs the system library libusb-1.0-0 "
    "(Debian/Ubuntu: apt-get install libusb-1.0-0)",
    "cv2": "pip install opencv-python-headless",
    "onnxruntime": "pip install onnxruntime (onnxruntime-gpu for CUDA/TensorRT)",
    "serial": "pip install pyserial",
    "gymnasium": "pip install gymnasium",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`DependencyNotInstalled` saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        root = module.split(".")[0]
        hint = _HINTS.get(root, f"pip install {root}")
        what = f" (needed for {purpose})" if purpose else ""
        raise DependencyNotInstalled(f"cannot import {module}{what}: {e}. Fix: {hint}") from e
