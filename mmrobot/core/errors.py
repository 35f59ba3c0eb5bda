"""The project's exception hierarchy.

Every error mmrobot raises derives from :class:`MmrobotError`, and where a builtin exception
fits it derives from that too, so ``except ValueError`` and ``except MmrobotError`` both work.
Messages say what was received, what was expected and, where there is one, how to fix it.
"""

from __future__ import annotations

__all__ = [
    "MmrobotError",
    "ConfigError",
    "DependencyNotInstalled",
    "DeviceNotConnectedError",
    "DeviceTimeoutError",
    "LifecycleError",
    "OutputExistsError",
    "ProtocolError",
    "SafetyError",
]


class MmrobotError(Exception):
    """Root of every error raised by mmrobot."""


class ConfigError(MmrobotError, ValueError):
    """A configuration value (rig file, launch file, spec) is invalid."""


class DependencyNotInstalled(MmrobotError, ImportError):
    """An optional dependency is missing; the message says how to install it."""


class DeviceNotConnectedError(MmrobotError, ConnectionError):
    """A device is absent, unplugged, or cannot be opened."""


class DeviceTimeoutError(MmrobotError, TimeoutError):
    """A device did not answer in time."""


class OutputExistsError(MmrobotError, FileExistsError):
    """An output (dataset, run folder, results) exists and would be overwritten; the message
    names the flag that replaces it (``--overwrite``) or continues it (``--resume``)."""


class ProtocolError(MmrobotError, ValueError):
    """Bytes from a device do not follow its wire protocol."""


class LifecycleError(MmrobotError, RuntimeError):
    """A method was called in the wrong lifecycle state (read before open, step before reset)."""


class SafetyError(MmrobotError, RuntimeError):
    """A safety limit was violated and the system stopped."""
