"""Lazy imports of heavy or optional dependencies, with an install hint when missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from mmrobot.core.errors import DependencyNotInstalled
from mmrobot.core.extras import extras_for_module, install_hint

__all__ = ["require"]

# What to install for modules no extra provides, and notes for those that need more than pip.
_HINTS = {
    "PIL": "pip install pillow",
    "onnxruntime": "pip install onnxruntime (onnxruntime-gpu for CUDA/TensorRT)",
}
_NOTES = {
    "open3d": "; its wheel also needs the system library libusb-1.0-0 "
    "(Debian/Ubuntu: apt-get install libusb-1.0-0)",
}


def require(module: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`DependencyNotInstalled` saying how to install it
    (the mmrobot extra that provides it, where one does)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        root = module.split(".")[0]
        extras = extras_for_module(root)
        if root in _HINTS:
            hint = _HINTS[root]
        elif extras:
            hint = install_hint(extras[:1])
            if len(extras) > 1:
                hint += " or " + " or ".join(install_hint([x]) for x in extras[1:])
        else:
            hint = f"pip install {root}"
        what = f" (needed for {purpose})" if purpose else ""
        raise DependencyNotInstalled(
            f"cannot import {module}{what}: {e}. Fix: {hint}{_NOTES.get(root, '')}"
        ) from e
