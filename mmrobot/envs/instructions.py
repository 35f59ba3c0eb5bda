"""Language instructions for the task suite: templates with synonyms, train and held-out.

Two disjoint phrasing sets: ``"train"`` templates and synonyms are used to generate
training data; ``"heldout"`` ones only for evaluation (different sentence frames and extra
synonyms), so a policy's language generalization can be measured. A user may also give any
free-form instruction together with an explicit task spec; :func:`infer_task` reads a task
spec out of an instruction that names a known block.
"""

from __future__ import annotations

import re
from typing import Literal

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.envs import names
from mmrobot.envs.tasks import TaskSpec

__all__ = ["Split", "SPLITS", "make_instruction", "all_instructions", "infer_task"]

Split = Literal["train", "heldout"]
SPLITS: tuple[str, ...] = ("train", "heldout")

_COLOR_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "red": ("red",),
        "green": ("green",),
        "blue": ("blue",),
        "yellow": ("yellow",),
    },
    "heldout": {
        "red": ("crimson", "scarlet"),
        "green": ("emerald", "lime"),
        "blue": ("navy", "azure"),
        "yellow": ("golden", "lemon"),
    },
}
_SIZE_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {"small": ("small", "little"), "large": ("large", "big")},
    "heldout": {"small": ("tiny", "smaller"), "large": ("huge", "bigger")},
}
_NOUNS = {"train": ("block", "cube"), "heldout": ("box", "brick")}
_ZONE_WORDS = {
    "train": {"left": ("left zone", "left target"), "right": ("right zone", "right target")},
    "heldout": {"left": ("left-hand area",), "right": ("right-hand area",)},
}

# {obj}: the described block, {base}: the base block of stack, {zone}: the zone phrase
_TEMPLATES: dict[str, dict[str, tuple[str, ...]]] = {
    "train": {
        "reach": ("reach the {obj}", "move to the {obj}", "go to the {obj}"),
        "push": ("push the {obj} into the {zone}", "slide the {obj} to the {zone}"),
        "pick": ("pick up the {obj}", "lift the {obj}", "grab the {obj}"),
        "place": ("put the {obj} in the bin", "place the {obj} into the bin"),
        "stack": ("stack the {obj} on the {base}", "put the {obj} on top of the {base}"),
    },
    "heldout": {
        "reach": ("bring your hand above the {obj}", "hover over the {obj}"),
        "push": ("shove the {obj} over to the {zone}", "nudge the {obj} into the {zone}"),
        "pick": ("raise the {obj} off the table", "take hold of the {obj} and lift it"),
        "place": ("drop the {obj} into the container", "the {obj} goes in the bin"),
        "stack": ("set the {obj} onto the {base}", "the {obj} belongs on the {base}"),
    },
}


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown instruction split {split!r}; valid: {list(SPLITS)}")


def _phrase(split: str, color: str, size: str, rng: np.random.Generator) -> str:
    c = rng.choice(_COLOR_WORDS[split][color])
    s = rng.choice(_SIZE_WORDS[split][size])
    n = rng.choice(_NOUNS[split])
    return f"{s} {c} {n}"


def make_instruction(spec: TaskSpec, rng: np.random.Generator, split: Split = "train") -> str:
    """A random instruction for a complete task spec from the given phrasing set."""
    _check_split(split)
    if not spec.complete:
        raise ConfigError(f"task spec {spec.format()!r} is incomplete; resolve it first")
    p = spec.params
    template = str(rng.choice(_TEMPLATES[split][spec.task]))
    fill = {"obj": _phrase(split, p["color"], p["size"], rng)}
    if spec.task == "stack":
        fill["base"] = _phrase(split, p["base_color"], p["base_size"], rng)
    if spec.task == "push":
        fill["zone"] = str(rng.choice(_ZONE_WORDS[split][p["zone"]]))
    return template.format(**fill)


def all_instructions(spec: TaskSpec, split: Split = "train") -> set[str]:
    """Every instruction the split can produce for a complete spec (for tests and audits)."""
    _check_split(split)
    p = spec.params

    def phrases(color: str, size: str) -> list[str]:
        return [
            f"{s} {c} {n}"
            for c in _COLOR_WORDS[split][color]
            for s in _SIZE_WORDS[split][size]
            for n in _NOUNS[split]
        ]

    out = set()
    bases = phrases(p["base_color"], p["base_size"]) if spec.task == "stack" else [""]
    zones = _ZONE_WORDS[split][p["zone"]] if spec.task == "push" else ("",)
    for t in _TEMPLATES[split][spec.task]:
        for o in phrases(p["color"], p["size"]):
            for b in bases:
                for z in zones:
                    out.add(t.format(obj=o, base=b, zone=z))
    return out


_VERBS = {
    "stack": ("stack", "on top", "onto", "on the", "belongs on"),
    "push": ("push", "slide", "shove", "nudge", "zone", "area", "target"),
    "place": ("bin", "container"),
    "pick": ("pick", "lift", "grab", "raise", "take hold"),
    "reach": ("reach", "move to", "go to", "hover", "above"),
}


def _word_map(table: dict[str, dict[str, tuple[str, ...]]]) -> dict[str, str]:
    return {w: key for split in table.values() for key, ws in split.items() for w in ws}


def infer_task(instruction: str) -> TaskSpec:
    """Read a task spec from an instruction in either phrasing set (or close to it).

    Raises:
        ConfigError: the instruction names no known block (the message lists the colour
            and size words understood) or no known action.
    """
    words = re.findall(r"[a-z]+", instruction.lower())
    colors = _word_map(_COLOR_WORDS)
    sizes = _word_map(_SIZE_WORDS)
    found = [(i, colors[w]) for i, w in enumerate(words) if w in colors]
    if not found:
        raise ConfigError(
            f"instruction {instruction!r} names no known block; name a colour "
            f"({sorted(colors)}) and optionally a size ({sorted(sizes)}), or pass an explicit "
            f"task spec such as 'pick color=red size=small'"
        )
    text = " ".join(words)
    task = next((t for t, cues in _VERBS.items() if any(c in text for c in cues)), None)
    if task is None:
        raise ConfigError(
            f"instruction {instruction!r} names no known action; tasks: {list(_VERBS)}"
        )

    def size_before(i: int) -> str | None:
        for j in range(i - 1, max(-1, i - 3), -1):
            if words[j] in sizes:
                return sizes[words[j]]
        return None

    params: dict[str, str] = {"color": found[0][1]}
    s = size_before(found[0][0])
    if s:
        params["size"] = s
    if task == "stack" and len(found) > 1:
        params["base_color"] = found[1][1]
        s = size_before(found[1][0])
        if s:
            params["base_size"] = s
    if task == "push":
        if "left" in words:
            params["zone"] = "left"
        elif "right" in words:
            params["zone"] = "right"
    return TaskSpec(task, params)


_ = names  # colour/size vocabulary mirrors names.COLORS / names.SIZES
