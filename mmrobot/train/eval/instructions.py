"""Instruction files and task specs: every complete task spec (``mmrobot eval
--list-tasks``) and the JSON Lines file of ``{"task", "instruction"}`` a user evaluates on."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from mmrobot.core.errors import ConfigError

__all__ = ["InstructionLine", "all_task_specs", "load_instructions"]


def _param_values(param: str) -> tuple[str, ...]:
    from mmrobot.envs import names

    if param.endswith("color"):
        return tuple(names.COLORS)
    if param.endswith("size"):
        return tuple(names.SIZES)
    if param == "zone":
        return tuple(names.ZONES)
    raise ConfigError(f"no value list for task parameter {param!r}")


def all_task_specs() -> list[str]:
    """Every complete task spec, one line each, as instructions files take them.

    E.g. ``pick color=red size=small``; each parses back with :meth:`TaskSpec.parse`.
    """
    from mmrobot.envs.tasks import TASKS, TaskSpec

    out = []
    for name, task in TASKS.items():
        for combo in itertools.product(*(_param_values(p) for p in task.params)):
            try:
                spec = TaskSpec(name, dict(zip(task.params, combo)))
            except ConfigError:  # e.g. stack with the block on itself
                continue
            out.append(spec.format())
    return out


@dataclass(frozen=True)
class InstructionLine:
    """One line of a user's instructions file (``line`` is 1-based)."""

    line: int
    task: str
    instruction: str


def load_instructions(path: str | Path) -> list[InstructionLine]:
    """Read a JSON Lines file of ``{"task": TASK_SPEC, "instruction": TEXT}`` objects.

    ``TASK_SPEC`` is a complete task spec as ``mmrobot eval --list-tasks`` prints it. Blank
    lines are skipped. Any bad line raises :class:`ConfigError` naming the file, the line
    number and what is wrong.
    """
    from mmrobot.envs.tasks import TaskSpec, list_tasks

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"instructions file {str(path)!r} not found")
    out: list[InstructionLine] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e})") from e
    example = '{"task": "pick color=red size=small", "instruction": "lift the red cube"}'
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path} line {i}"
        try:
            doc = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: not valid JSON ({e.msg}); expected e.g. {example}") from e
        if not isinstance(doc, dict):
            raise ConfigError(
                f"{where}: expected a JSON object, got {type(doc).__name__}; e.g. {example}"
            )
        missing = [k for k in ("task", "instruction") if k not in doc]
        if missing:
            raise ConfigError(f"{where}: missing key(s) {missing}; e.g. {example}")
        extra = sorted(set(doc) - {"task", "instruction"})
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {extra}; only 'task' and 'instruction'")
        task, instruction = doc["task"], doc["instruction"]
        if not isinstance(task, str):
            raise ConfigError(f"{where}: 'task' must be a string, got {type(task).__name__}")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ConfigError(f"{where}: 'instruction' must be a non-empty string")
        try:
            spec = TaskSpec.parse(task)
        except ConfigError as e:
            valid = "\n  ".join(list_tasks())
            raise ConfigError(
                f"{where}: unknown task spec {task!r}: {e}\nvalid task specs (every "
                f"combination is listed by `mmrobot eval --list-tasks`):\n  {valid}"
            ) from e
        if not spec.complete:
            from mmrobot.envs.tasks import TASKS

            lack = [p for p in TASKS[spec.task].params if p not in spec.params]
            raise ConfigError(
                f"{where}: task spec {task!r} is incomplete (missing {lack}); give every "
                f"parameter so the instruction and the scene agree, e.g. "
                f"{_example_spec(spec.task)!r} (see `mmrobot eval --list-tasks`)"
            )
        out.append(InstructionLine(i, spec.format(), instruction.strip()))
    if not out:
        raise ConfigError(f"{path}: no instructions (one JSON object per line, e.g. {example})")
    return out


def _example_spec(task: str) -> str:
    return next(s for s in all_task_specs() if s.split()[0] == task)
