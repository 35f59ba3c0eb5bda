"""Language instructions for the task suite: templates with synonyms, train and held-out.

Two disjoint phrasing sets: ``"train"`` templates and synonyms are used to generate
training data; ``"heldout"`` ones only for evaluation (different sentence frames and extra
synonyms), so a policy's language generalization can be measured. A user may also give any
free-form instruction together with an explicit task spec; :func:`infer_task` (from
:mod:`mmrobot.envs.reader`) reads a task spec out of one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.envs.reader import infer_task
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
