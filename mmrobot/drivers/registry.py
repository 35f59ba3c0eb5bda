"""The kind registry: one explicit map from the ``kind`` string of a rig-file entry to its
:class:`~mmrobot.drivers.base.Driver` or :class:`~mmrobot.drivers.base.Actuator` class."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mmrobot.core.errors import ConfigError

if TYPE_CHECKING:
    from mmrobot.drivers.base import Actuator, Driver

__all__ = [
    "actuator_kinds",
    "driver_kinds",
    "get_actuator_class",
    "get_driver_class",
    "register_actuator",
    "register_driver",
]

_DRIVERS: dict[str, type[Driver]] = {}
_ACTUATORS: dict[str, type[Actuator]] = {}
# Kinds whose module is imported on first use (it pulls in a heavier dependency); a fixed map
# in code, never an import path from a config file.
_LAZY_DRIVER_MODULES = {"replay": "mmrobot.drivers.replay"}
_T = TypeVar("_T")


def _registrar(registry: dict[str, Any], what: str, kind: str) -> Callable[[type[_T]], type[_T]]:
    def deco(cls: type[_T]) -> type[_T]:
        if kind in registry and registry[kind] is not cls:
            raise ConfigError(
                f"{what} kind {kind!r} is already registered to {registry[kind].__name__}"
            )
        registry[kind] = cls
        cls.kind = kind  # type: ignore[attr-defined]
        return cls

    return deco


def register_driver(kind: str) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: map ``kind`` (the rig file's ``kind = "..."``) to a Driver class."""
    return _registrar(_DRIVERS, "driver", kind)


def register_actuator(kind: str) -> Callable[[type[_T]], type[_T]]:
    """Class decorator: map ``kind`` to an Actuator class."""
    return _registrar(_ACTUATORS, "actuator", kind)


def driver_kinds() -> tuple[str, ...]:
    """Registered driver kinds (and those registered on first use), sorted."""
    return tuple(sorted(set(_DRIVERS) | set(_LAZY_DRIVER_MODULES)))


def actuator_kinds() -> tuple[str, ...]:
    """Registered actuator kinds, sorted."""
    return tuple(sorted(_ACTUATORS))


def get_driver_class(kind: str) -> type[Driver]:
    """The Driver class for ``kind``; ConfigError listing the known kinds otherwise."""
    if kind not in _DRIVERS and kind in _LAZY_DRIVER_MODULES:
        import importlib

        importlib.import_module(_LAZY_DRIVER_MODULES[kind])
    try:
        return _DRIVERS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown driver kind {kind!r}; known kinds: {list(driver_kinds())}"
        ) from None


def get_actuator_class(kind: str) -> type[Actuator]:
    """The Actuator class for ``kind``; ConfigError listing the known kinds otherwise."""
    try:
        return _ACTUATORS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown actuator kind {kind!r}; known kinds: {list(actuator_kinds())}"
        ) from None
