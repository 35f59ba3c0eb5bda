"""Writing calibration results into a copy of a rig file, keeping its comments and layout.

The driver entry's ``[[driver]]`` block is found by its ``name``; each calibrated key
(``extrinsics``, ``bias``, ``payload``, ``intrinsics``, ``calibration``, ...) replaces the
key's line in that block, or is added at the block's end. Values are written as one-line
TOML (inline tables). The result is validated with the rig loader before it is written, and
an existing file is never replaced unless asked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmrobot.core._toml import tomllib
from mmrobot.core.errors import ConfigError, OutputExistsError

__all__ = ["toml_value", "update_driver_entry", "write_rig_copy"]

_KEY = re.compile(r"^([A-Za-z0-9_-]+)\s*=")


def toml_value(v: Any) -> str:
    """One-line TOML for a number, string, bool, sequence or mapping (inline table)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ConfigError(f"cannot write the non-finite value {v} into a rig file")
        return f"{v:.7g}" if ("e" in f"{v:.7g}" or "." in f"{v:.7g}") else f"{v:.7g}.0"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_key(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    if hasattr(v, "tolist"):
        return toml_value(v.tolist())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise ConfigError(f"cannot write {type(v).__name__} {v!r} into a rig file")


def _key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else toml_value(k)


def update_driver_entry(text: str, driver: str, values: Mapping[str, Any]) -> str:
    """``text`` with the ``[[driver]]`` entry named ``driver`` given ``values`` (key -> value).

    Raises:
        ConfigError: no such entry, or a key to replace spans several lines.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith("[")]
    block = None
    for n, i in enumerate(starts):
        if lines[i].strip() != "[[driver]]":
            continue
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        names = [
            tomllib.loads(line).get("name")
            for line in lines[i + 1 : end]
            if _KEY.match(line.strip()) and line.strip().startswith("name")
        ]
        if driver in names:
            block = (i, end)
            break
    if block is None:
        raise ConfigError(f"the rig file has no [[driver]] entry named {driver!r}")
    start, end = block
    # the block's content ends at its last key line (comments after it belong to the next)
    last = max(j for j in range(start, end) if _KEY.match(lines[j].strip()) or j == start)
    for key, value in values.items():
        line = f"{_key(key)} = {toml_value(value)}"
        found = [j for j in range(start + 1, last + 1) if _key_of(lines[j]) == key]
        if found:
            j = found[0]
            try:
                tomllib.loads(lines[j].strip())
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(
                    f"the value of {key!r} in entry {driver!r} spans several lines; put it on "
                    "one line (or remove it) and run the calibration again"
                ) from e
            lines[j] = line
        else:
            lines.insert(last + 1, line)
            last += 1
    return "\n".join(lines) + "\n"


def _key_of(line: str) -> str | None:
    m = _KEY.match(line.strip())
    return m.group(1) if m else None


def write_rig_copy(
    source: str | Path,
    out: str | Path,
    driver: str,
    values: Mapping[str, Any],
    header: str,
    *,
    overwrite: bool = False,
) -> Path:
    """Write a copy of the rig file ``source`` to ``out`` with ``driver``'s entry updated.

    ``header`` becomes a comment line at the top. The copy is validated as a rig file first.

    Raises:
        OutputExistsError: ``out`` exists and ``overwrite`` is false.
        ConfigError: the updated file is not a valid rig file (nothing is written).
    """
    from mmrobot.drivers.rig import parse_rig

    src, dst = Path(source), Path(out)
    if dst.exists() and not overwrite:
        raise OutputExistsError(f"{dst} exists; choose another --out or pass --force to replace it")
    text = update_driver_entry(src.read_text(encoding="utf-8"), driver, values)
    text = f"# {header}\n" + text
    try:
        parse_rig(tomllib.loads(text), source=str(dst), default_name=dst.stem)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"the calibrated copy of {src} is not valid TOML: {e}") from e
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(text, encoding="utf-8")
    return dst
