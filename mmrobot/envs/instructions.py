"""Language instructions for the task suite: templates with synonyms, train and held-out.

Two disjoint phrasing sets: ``"train"`` templates and synonyms are used to generate
training data; ``"heldout"`` ones only for evaluation (different sentence frames and extra
synonyms), so a policy's language generalization can be measured. An instruction names a
block by size and colour ("the small red block") or, as people do when nothing else on the
table has that colour, by colour alone ("the red block": ``sizes=False``). A user may also
give any free-form instruction together with an explicit task spec; :func:`infer_task` (from
:mod:`mmrobot.envs.reader`) reads a task spec out of one.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mmrobot.core.errors import ConfigError
from mmrobot.envs.reader import infer_task
from mmrobot.envs.tasks import TaskSpec

__all__ = [
    "Split",
    "SPLITS",
    "make_instruction",
    "all_instructions",
    "colors_alone_allowed",
    "infer_task",
]

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


def _phrase(split: str, color: str, size: str, rng: np.random.Generator, sizes: bool) -> str:
    c = rng.choice(_COLOR_WORDS[split][color])
    s = rng.choice(_SIZE_WORDS[split][size])  # drawn either way: the same draws follow
    n = rng.choice(_NOUNS[split])
    return f"{s} {c} {n}" if sizes else f"{c} {n}"


def colors_alone_allowed(spec: TaskSpec) -> bool:
    """Whether colour words alone can name the spec's blocks (not so for a red-on-red stack)."""
    colors = [c for c, _ in spec.blocks]
    return len(set(colors)) == len(colors)


def make_instruction(
    spec: TaskSpec, rng: np.random.Generator, split: Split = "train", sizes: bool = True
) -> str:
    """A random instruction for a complete task spec from the given phrasing set.

    ``sizes=False`` names the blocks by colour alone; the caller makes sure no other block of
    that colour is on the table. The same random numbers are drawn either way.
    """
    _check_split(split)
    if not spec.complete:
        raise ConfigError(f"task spec {spec.format()!r} is incomplete; resolve it first")
    if not sizes and not colors_alone_allowed(spec):
        raise ConfigError(
            f"{spec.format()!r}: both blocks are {spec.params['color']}; only their sizes tell "
            "them apart, so the instruction needs its size words (sizes=True)"
        )
    p = spec.params
    template = str(rng.choice(_TEMPLATES[split][spec.task]))
    fill = {"obj": _phrase(split, p["color"], p["size"], rng, sizes)}
    if spec.task == "stack":
        fill["base"] = _phrase(split, p["base_color"], p["base_size"], rng, sizes)
    if spec.task == "push":
        fill["zone"] = str(rng.choice(_ZONE_WORDS[split][p["zone"]]))
    return template.format(**fill)


def all_instructions(spec: TaskSpec, split: Split = "train", sizes: bool | None = None) -> set[str]:
    """Every instruction the split can produce for a complete spec (for tests and audits):
    with size words (``sizes=True``), by colour alone (``False``, where allowed) or both."""
    _check_split(split)
    p = spec.params

    def phrases(color: str, size: str, sizes: bool) -> list[str]:
        return [
            f"{s} {c} {n}" if sizes else f"{c} {n}"
            for c in _COLOR_WORDS[split][color]
            for s in _SIZE_WORDS[split][size]
            for n in _NOUNS[split]
        ]

    out = set()
    zones = _ZONE_WORDS[split][p["zone"]] if spec.task == "push" else ("",)
    forms = (True, False) if sizes is None else (sizes,)
    for sized in (f for f in forms if f or colors_alone_allowed(spec)):
        bases = phrases(p["base_color"], p["base_size"], sized) if spec.task == "stack" else [""]
        for t in _TEMPLATES[split][spec.task]:
            for o in phrases(p["color"], p["size"], sized):
                for b in bases:
                    for z in zones:
                        out.add(t.format(obj=o, base=b, zone=z))
    return out
