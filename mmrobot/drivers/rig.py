"""Rig files: which drivers and actuators a robot has, validated on load.

A rig file is TOML (``drivers/*.toml``)::

    name = "my_robot"

    [[driver]]
    kind = "ft300"                 # a registered driver kind (see `driver_kinds()`)
    name = "wrist_ft"              # unique in the rig
    port = "/dev/ttyUSB1"
    baud_rate = 19200
    stream = { name = "ft", max_age_ms = 50, history = 10 }
    extrinsics = { translation_m = [0, 0, 0.1], rotation_rpy_rad = [0, 0, 0] }

    [[actuator]]
    kind = "dynamixel"
    name = "arm_goal"
    port = "/dev/ttyUSB0"
    ...

Each entry is validated by its kind's pydantic model (unknown keys are errors); an error
names the file, the entry and the field. Building drivers does not open them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mmrobot.core._toml import tomllib
from mmrobot.core.clock import Clock
from mmrobot.core.errors import ConfigError
from mmrobot.core.types import StreamSpec
from mmrobot.drivers.base import (
    Actuator,
    ActuatorConfig,
    Driver,
    DriverConfig,
    get_actuator_class,
    get_driver_class,
)

if TYPE_CHECKING:
    from mmrobot.sync import StreamBuffer

__all__ = ["Rig", "load_rig", "parse_rig"]

_TOP_KEYS = {"name", "description", "driver", "actuator"}


@dataclass(frozen=True)
class Rig:
    """A validated rig: driver and actuator entries and the file they came from.

    Attributes:
        name: the rig's name.
        source: the file path (or a label) used in error messages.
        drivers: validated driver entries, in file order.
        actuators: validated actuator entries, in file order.
    """

    name: str
    source: str
    drivers: tuple[DriverConfig, ...]
    actuators: tuple[ActuatorConfig, ...] = ()
    description: str = ""

    def driver(self, name: str) -> DriverConfig:
        """The driver entry called ``name``."""
        for d in self.drivers:
            if d.name == name:
                return d
        raise ConfigError(
            f"{self.source}: no driver named {name!r}; have {[d.name for d in self.drivers]}"
        )

    def build_drivers(
        self,
        clock: Clock | None = None,
        names: Sequence[str] | None = None,
        buffer_factory: Callable[[StreamSpec, int], StreamBuffer] | None = None,
    ) -> list[Driver]:
        """Construct (not open) the enabled drivers, or exactly those named in ``names``;
        ``buffer_factory`` makes their stream buffers (see :class:`~mmrobot.drivers.Driver`)."""
        if names is None:
            entries = [d for d in self.drivers if d.enabled]
        else:
            entries = [self.driver(n) for n in names]
        extra = {} if buffer_factory is None else {"buffer_factory": buffer_factory}
        return [
            get_driver_class(e.kind)(e, clock=clock, source=self.source, **extra) for e in entries
        ]

    def build_actuators(self, clock: Clock | None = None) -> list[Actuator]:
        """Construct (not open) the actuators."""
        return [
            get_actuator_class(e.kind)(e, clock=clock, source=self.source) for e in self.actuators
        ]

    def port_problems(self) -> list[str]:
        """What is wrong with the serial ports of the enabled drivers and the actuators, one
        line each: a port must exist and be a character device (URLs such as
        ``socket://`` are not checked). Nothing is opened."""
        problems = []
        for entry in (*(d for d in self.drivers if d.enabled), *self.actuators):
            port = getattr(entry, "port", None)
            if not isinstance(port, str) or "://" in port or os.name != "posix":
                continue
            where = f"port {port!r} of {entry.name!r} in {self.source}"
            try:
                mode = os.stat(port).st_mode
            except FileNotFoundError:
                problems.append(
                    f"{where} does not exist; plug the device in, start `mmrobot emulate`, "
                    "or set its port"
                )
                continue
            except OSError as e:
                problems.append(f"{where} cannot be read ({e.strerror}); check its permissions")
                continue
            if not stat.S_ISCHR(mode):
                problems.append(
                    f"{where} is not a character device (a serial port is one, e.g. "
                    "/dev/ttyUSB0); set `port` to the device"
                )
        return problems

    def specs(self) -> tuple[StreamSpec, ...]:
        """Every stream spec the rig's drivers produce, in order."""
        return tuple(s for d in self.build_drivers() for s in d.specs)


def load_rig(path: str | os.PathLike[str]) -> Rig:
    """Read and validate a rig file.

    Raises:
        FileNotFoundError: no such file.
        ConfigError: not valid TOML, or an entry is invalid (names file, entry and field).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"rig file {str(p)!r} not found (rig files live in drivers/*.toml)")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from e
    return parse_rig(data, source=str(p), default_name=p.stem)


def parse_rig(data: Mapping[str, Any], source: str = "<rig>", default_name: str = "rig") -> Rig:
    """Validate a rig given as a mapping (a parsed TOML document)."""
    import mmrobot.drivers  # noqa: F401  (registers the built-in kinds)

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {unknown}; expected some of {sorted(_TOP_KEYS)}"
        )
    drivers = tuple(
        _validate(entry, i, "driver", source)
        for i, entry in enumerate(_entries(data, "driver", source))
    )
    actuators = tuple(
        _validate(entry, i, "actuator", source)
        for i, entry in enumerate(_entries(data, "actuator", source))
    )
    for group, items in (("driver", drivers), ("actuator", actuators)):
        seen: set[str] = set()
        for e in items:
            if e.name in seen:
                raise ConfigError(
                    f"{source}: two {group} entries are named {e.name!r}; names must be unique"
                )
            seen.add(e.name)
    rig = Rig(
        name=str(data.get("name", default_name)),
        source=source,
        drivers=drivers,  # type: ignore[arg-type]
        actuators=actuators,  # type: ignore[arg-type]
        description=str(data.get("description", "")),
    )
    streams: dict[str, str] = {}
    for d in rig.build_drivers():  # enabled ones; a disabled entry is still validated above
        for s in d.specs:
            if s.name in streams:
                raise ConfigError(
                    f"{source}: stream {s.name!r} is produced by both driver {streams[s.name]!r} and "
                    f"driver {d.name!r}; set a different `stream.name` in one of them"
                )
            streams[s.name] = d.name
    return rig


def _entries(data: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(x, Mapping) for x in items):
        raise ConfigError(f"{source}: `{key}` must be an array of tables ([[{key}]] entries)")
    return items


def _validate(entry: Mapping[str, Any], index: int, group: str, source: str) -> Any:
    label = entry.get("name")
    where = f"{source}: {group} #{index + 1}" + (f" {label!r}" if isinstance(label, str) else "")
    kind = entry.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(f'{where}: missing `kind` (a string such as "dynamixel")')
    try:
        cls = get_driver_class(kind) if group == "driver" else get_actuator_class(kind)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    try:
        return cls.Config.model_validate(dict(entry))
    except ValidationError as e:
        raise ConfigError(f"{where} (kind {kind!r}): {_describe(e, cls.Config)}") from None


def _describe(e: ValidationError, model: type) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(entry)"
        if err["type"] == "extra_forbidden":
            known = sorted(model.model_fields)  # type: ignore[attr-defined]
            parts.append(f"unknown field `{loc}`; expected some of {known}")
        elif err["type"] == "missing":
            parts.append(f"missing field `{loc}`")
        else:
            parts.append(f"field `{loc}`: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(parts)
