"""Command-line overrides of config keys: ``key=value`` or ``section.key=value``."""

from __future__ import annotations

from mmrobot.core._toml import tomllib
from mmrobot.core.errors import ConfigError

__all__ = ["parse_override"]


def parse_override(item: str, example: str = "loop.rate_hz=50") -> tuple[str, object]:
    """Split ``KEY=VALUE``; the value is read as TOML (``50``, ``1e-3``, ``true``, ``[1, 2]``,
    ``"text"``), and a bare word that is not TOML is taken as a string (``device=cpu``).

    Raises:
        ConfigError: no ``=`` or an empty key.
    """
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. {example}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value
