"""Reading a task spec out of a free-form instruction: a tokenizer and a few rules, no learning.

The reading sets up the simulated scene and its success detector (``mmrobot run``,
``TabletopEnv.reset(options={"instruction": ...})``); a policy still gets the raw text.

1. **Tokens.** Lower-case words, whole words only; multi-word phrases first ("pick up",
   "take hold of", "on top of", "next to", "to the left of", "don't"). Punctuation, "but",
   "then", and "and"/"or" before a verb end a clause.
2. **Referents.** A run of colour, size and block words is one block ("the small red cube");
   "it" is the block named last; the bin, a zone ("the left zone", or just "left"), the table
   and the gripper are referents too. A preposition belongs to the referent after it.
3. **Negation.** "don't", "not", "never", "avoid", "without", "instead of", "leave" drop the
   verbs and blocks after them up to the end of their clause; those blocks are excluded.
4. **Rules.** The block with no preposition in front is the one acted on. Its destination
   picks the task: the bin → place, "onto"/"on top of" a block → stack, a zone → push.
   Without one, the verb does: lift-words → pick, push-words → push, stack → stack,
   reach-words → reach; "go to", "hover over", "move your gripper next to" a block → reach.
   A phrase that only says where a block is ("on the left", "next to the blue one",
   "on the table") is noted and is not part of the spec.

More than one reading raises :class:`AmbiguousInstruction` (a :class:`ConfigError`) listing
them; none raises a :class:`ConfigError` saying what is missing. docs/instructions.md has the
vocabulary and examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from mmrobot.core.errors import ConfigError
from mmrobot.envs.reader_words import (
    COLOR_WORDS,
    NOUN_PHRASE_KINDS,
    SIZE_WORDS,
    VERB_WORDS,
    Referent,
    Token,
    next_kind,
    noun_phrase,
    tokenize,
)
from mmrobot.envs.tasks import TASKS, TaskSpec

__all__ = [
    "AmbiguousInstruction",
    "COLOR_WORDS",
    "Reading",
    "SIZE_WORDS",
    "VERB_WORDS",
    "infer_task",
    "read_instruction",
]

# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Reading:
    """What an instruction is read as.

    Attributes:
        spec: the task spec; parameters the instruction leaves open are drawn at reset.
        notes: what was read but is not part of the spec (where a block is, blocks only
            used as landmarks, excluded blocks), one short phrase each.
    """

    spec: TaskSpec
    notes: tuple[str, ...] = ()

    def describe(self) -> str:
        """``spec`` in its one-line form, followed by the notes in parentheses."""
        text = self.spec.format()
        return f"{text}  ({'; '.join(self.notes)})" if self.notes else text


class AmbiguousInstruction(ConfigError):
    """An instruction with more than one reading; ``readings`` lists them."""

    def __init__(self, instruction: str, readings: tuple[Reading, ...]) -> None:
        self.instruction = instruction
        self.readings = readings
        lines = "\n".join(f"  {r.describe()}" for r in readings)
        super().__init__(
            f"instruction {instruction!r} is ambiguous; it can be read as:\n{lines}\n"
            "say which: rephrase it (e.g. 'into the left zone' for where a block goes, "
            "'next to' for a landmark) or give the task spec, e.g. "
            f"--task '{readings[-1].spec.format()}'"
        )


@dataclass
class _Parse:
    refs: list[Referent] = field(default_factory=list)
    verbs: list[str] = field(default_factory=list)  # classes of the verbs not negated
    verb_words: list[str] = field(default_factory=list)


def _parse(toks: list[Token]) -> _Parse:
    out = _Parse()
    prep: tuple[str, int] | None = None  # (kind, token index) waiting for its referent
    negated = False
    open_verb: int | None = None  # index in out.verbs of the last verb without its object
    i = 0

    def close_verb() -> None:
        nonlocal open_verb
        if open_verb is not None and out.verbs[open_verb] == "move":
            out.verbs[open_verb] = "reach"  # "move to the red block": the gripper moves
        open_verb = None

    while i < len(toks):
        t = toks[i]
        if t.kind == "break" or (t.kind == "and" and next_kind(toks, i + 1) == "verb"):
            close_verb()
            prep, negated = None, False
            i += 1
            continue
        if t.kind == "neg":
            negated = True
            i += 1
            continue
        if t.kind == "verb":
            close_verb()
            prep = None
            if not negated:
                out.verbs.append(t.value)
                out.verb_words.append(t.text)
                open_verb = len(out.verbs) - 1
            i += 1
            continue
        if t.kind == "prep":
            prep = (t.value, i)
            i += 1
            continue
        ref: Referent | None = None
        antecedent: Referent | None = None
        nxt = toks[i + 1].kind if i + 1 < len(toks) else None
        if t.kind in NOUN_PHRASE_KINDS or (t.kind == "side" and nxt in NOUN_PHRASE_KINDS):
            ref, i = noun_phrase(toks, i)
        else:
            if t.kind == "pronoun":
                theirs = [r for r in out.refs if r.kind == "block"]
                before = [r for r in theirs if r.prep is None] or theirs
                antecedent = before[-1] if before else None
                ref = replace(antecedent or Referent("block", ""), text="it", pronoun=True)
            elif t.kind == "side" and nxt == "zone":
                ref = Referent("zone", f"{t.text} {toks[i + 1].text}", side=t.value, explicit=True)
                i += 1
            elif t.kind == "side":
                ref = Referent("zone", t.text, side=t.value)
            elif t.kind == "zone":
                ref = Referent("zone", t.text, explicit=True)
            elif t.kind in ("bin", "table", "gripper"):
                ref = Referent(t.kind, t.text)
            i += 1
            if ref is None:
                continue  # a word that carries nothing
        ref.prep = prep[0] if prep else None
        ref.words = " ".join(t.text for t in toks[prep[1] : i]) if prep else ref.text
        ref.negated = negated
        prep = None
        if ref.pronoun and negated:
            continue  # "do not drop it": names no new block to exclude
        if antecedent is not None and ref.prep is None:
            antecedent.acted_on = True  # "go to the red block and pick it up"
        if ref.prep is None and open_verb is not None:
            if ref.kind == "gripper":
                out.verbs[open_verb] = "reach"  # "bring your hand above ...", "put the gripper"
            elif ref.kind == "block" and out.verbs[open_verb] == "move":
                out.verbs[open_verb] = "put"  # "move the red block ..."
            open_verb = None
        out.refs.append(ref)
    close_verb()
    return out


# ------------------------------------------------------------------------------ rules

_OTHER_SIZE = {"small": "large", "large": "small"}
_Block = tuple[str | None, str | None]


def _compatible(a: _Block, b: _Block) -> bool:
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def _merge(blocks: list[Referent]) -> list[Referent]:
    """Mentions of one block (compatible colour and size) merged, in order of mention."""
    out: list[Referent] = []
    for b in blocks:
        same = next((m for m in out if _compatible(m.block, b.block)), None)
        if same is None:
            out.append(replace(b))
        else:
            same.color, same.size = same.color or b.color, same.size or b.size
    return out


def _words(block: _Block) -> str:
    return " ".join(x for x in (block[1], block[0], "block") if x)


def _note(r: Referent) -> str:
    if r.kind == "table":
        return f"{r.phrase()!r} names nothing"
    if r.kind == "block" and r.prep == "to":
        return f"{r.phrase()!r} is another place to go"
    if r.kind == "block":
        return f"{r.phrase()!r} is a landmark"
    return f"{r.phrase()!r} says where the block is"


def _no_block(text: str, excluded: list[_Block]) -> ConfigError:
    colors = sorted(w for ws in COLOR_WORDS.values() for w in ws)
    sizes = sorted(w for ws in SIZE_WORDS.values() for w in ws)
    ex = f" (it only excludes the {', '.join(map(_words, excluded))})" if excluded else ""
    return ConfigError(
        f"instruction {text!r} names no known block{ex}; name a colour ({colors}) and "
        f"optionally a size ({sizes}), or pass an explicit task spec such as "
        "'pick color=red size=small'"
    )


class _Rules:
    """The readings of one instruction, from its referents and verbs."""

    def __init__(self, text: str, parse: _Parse) -> None:
        self.text = text
        self.refs = [r for r in parse.refs if not r.negated]
        self.verbs = set(parse.verbs)
        self.verb_words = parse.verb_words
        self.blocks = [r for r in self.refs if r.kind == "block"]
        named = {r.block for r in self.blocks}
        negated = [r.block for r in parse.refs if r.kind == "block" and r.negated and r.color]
        self.excluded = list(dict.fromkeys(b for b in negated if b not in named))

    def readings(self) -> list[Reading]:
        if not any(r.color for r in self.blocks):
            raise _no_block(self.text, self.excluded)
        themes = _merge([r for r in self.blocks if r.prep is None])
        if not themes:
            return self._reach()
        readings: list[Reading] = []
        errors: list[ConfigError] = []
        for theme in themes:  # more than one: each is a reading ("the red or the blue block")
            try:
                readings += self._with_theme(theme)
            except ConfigError as e:
                errors.append(e)
        if not readings:
            raise errors[0]
        return readings

    def _error(self, what: str) -> ConfigError:
        return ConfigError(f"instruction {self.text!r} {what}")

    def _params(self, b: Referent, role: str, notes: list[str]) -> dict[str, str]:
        """Colour and size of a block, with the excluded blocks taken out."""
        if b.color is None:
            raise self._error(
                f"names no colour for the block {role} ({b.text!r}); colours: {list(COLOR_WORDS)}"
            )
        if b.side:  # "the left red block"
            notes.append(f"{b.side!r} says where the block is")
        size = b.size
        for color, ex_size in self.excluded:
            if color != b.color:
                continue
            if ex_size is None or ex_size == size:
                raise self._error(f"both names and excludes the {_words((color, size))}")
            if size is None:  # "don't touch the small red block, lift the red one"
                size = _OTHER_SIZE[ex_size]
                notes.append(f"size={size}: the {_words((color, ex_size))} is excluded")
        return {"color": b.color, **({"size": size} if size else {})}

    def _reading(self, task: str, params: dict[str, str], notes: list[str]) -> Reading:
        excluded = [f"excluded: the {_words(b)}" for b in self.excluded]
        return Reading(TaskSpec(task, params), tuple(notes + excluded))

    # -- no block is acted on: the gripper goes to one
    def _reach(self) -> list[Reading]:
        if self.verbs != {"reach"}:
            words = ", ".join(repr(w) for w in self.verb_words) or "none"
            raise self._error(
                f"names no block to act on (verbs: {words}); say which block, e.g. "
                "'lift the red block', or where the gripper goes, e.g. 'move to the red block'"
            )
        targets = [b for b in self.blocks if b.prep in ("to", "on", "onto", "near")]
        if not targets:
            raise _no_block(self.text, self.excluded)
        first = targets[0]
        others = _merge([b for b in targets[1:] if b.prep == "to"])  # "go to A, then to B"
        readings = []
        for target in [first, *(b for b in others if not _compatible(b.block, first.block))]:
            notes: list[str] = []
            params = self._params(target, "to reach", notes)
            rest = [
                r
                for r in self.refs
                if r.kind != "gripper" and not (r.kind == "block" and r.block == target.block)
            ]
            readings.append(self._reading("reach", params, [*map(_note, rest), *notes]))
        return readings

    # -- a block is acted on: where it goes picks the task, else the verb does
    def _role(self, r: Referent) -> str:
        """Whether a referent is where the block goes ("goal"), only where something is
        ("located"), or either ("maybe"), by its preposition and the verbs."""
        verbs = self.verbs
        takes_goal = not verbs or bool(verbs & {"push", "put", "stack"})
        if r.kind == "table" or r.prep in ("near", "from", "with"):
            return "located"
        if r.prep in ("to", "onto"):
            if r.kind == "block" and r.prep == "to" and takes_goal:
                raise self._error(
                    f"moves a block {r.phrase()!r}; no task does that. To stack, say "
                    f"'onto the {r.text}' or 'on top of the {r.text}'"
                )
            return "located" if r.kind == "block" and r.prep == "to" else "goal"
        # "on"/"in"/"at" or no preposition: a goal of verbs that move a block somewhere
        if r.kind in ("block", "bin") or r.explicit:
            return "goal" if takes_goal else "located"
        # a bare side: "push it left", "put it on the left", "push the red block on the left"
        if r.prep is None or not verbs or "put" in verbs:
            return "goal"
        return "maybe" if "push" in verbs else "located"

    def _with_theme(self, theme: Referent) -> list[Reading]:
        roles: dict[str, list[Referent]] = {"goal": [], "maybe": [], "located": []}
        for r in self.refs:
            if r.kind == "gripper" or (r.kind == "block" and (r.prep is None or r.acted_on)):
                continue  # the gripper, and the block acted on
            roles[self._role(r)].append(r)
        goals, maybe, located = roles["goal"], roles["maybe"], roles["located"]
        notes = [_note(r) for r in located]
        destinations = self._distinct(goals)
        if destinations:
            return [self._to(theme, d, list(notes)) for d in destinations]
        if maybe:
            zone = maybe[0]
            params = self._params(theme, "to push", notes)
            return [
                self._reading("push", params, [*notes, _note(zone)]),
                self._reading(
                    "push",
                    {**params, "zone": str(zone.side)},
                    [*notes, f"{zone.phrase()!r} is where it goes"],
                ),
            ]
        return self._by_verb(theme, notes)

    @staticmethod
    def _distinct(goals: list[Referent]) -> list[Referent]:
        zones = {g.side: g for g in goals if g.kind == "zone"}
        if len(zones) > 1:
            zones.pop(None, None)  # "into the zone on the left": one zone
        bins = [g for g in goals if g.kind == "bin"][:1]
        return [*bins, *_merge([g for g in goals if g.kind == "block"]), *zones.values()]

    def _to(self, theme: Referent, goal: Referent, notes: list[str]) -> Reading:
        if "stack" in self.verbs and goal.kind != "block":
            raise self._error(f"stacks {goal.phrase()!r}; stacking needs a block to stack onto")
        if goal.kind == "bin":
            return self._reading("place", self._params(theme, "to place", notes), notes)
        if goal.kind == "zone":
            params = self._params(theme, "to push", notes)
            if goal.side:
                params["zone"] = goal.side
            return self._reading("push", params, notes)
        top = self._params(theme, "to stack", notes)
        base = self._params(goal, "to stack onto", notes)
        if top["color"] == base["color"]:  # two blocks of one colour: their sizes differ
            if "size" not in top and "size" not in base:
                raise self._error(
                    f"stacks a {top['color']} block onto a {top['color']} block; say which is "
                    "small and which is large"
                )
            top["size"] = top.get("size") or _OTHER_SIZE[base["size"]]
            base["size"] = base.get("size") or _OTHER_SIZE[top["size"]]
        return self._reading("stack", {**top, **{f"base_{k}": v for k, v in base.items()}}, notes)

    def _by_verb(self, theme: Referent, notes: list[str]) -> list[Reading]:
        tasks = set(self.verbs)
        if tasks - {"reach"}:
            tasks.discard("reach")  # reaching is part of every other task
        if tasks & {"push", "put", "stack"}:
            tasks.discard("pick")  # and so is picking up, for putting somewhere
        if not tasks:
            verbs = "; ".join(f"{k}: {', '.join(v[:4])}" for k, v in VERB_WORDS.items())
            raise self._error(f"names no action for the {_words(theme.block)}; verbs: {verbs}")
        if "put" in tasks:
            raise self._error(
                f"says to move the {_words(theme.block)} but not where to; name the bin, a "
                "block to stack it onto ('onto the blue block') or a zone ('to the left zone')"
            )
        readings = []
        for task in sorted(tasks, key=list(TASKS).index):
            task_notes = list(notes)
            readings.append(
                self._reading(task, self._params(theme, f"to {task}", task_notes), task_notes)
            )
        return readings


# ------------------------------------------------------------------------------ entry points


def read_instruction(instruction: str) -> Reading:
    """Read a task spec out of a free-form instruction.

    Args:
        instruction: any text, e.g. "could you please put the small red cube in the bin".

    Returns:
        The one reading: its spec and notes on what was read but is not in the spec.

    Raises:
        AmbiguousInstruction: it can be read more than one way (the readings are listed).
        ConfigError: it cannot be read: it is empty, names no known block or no action, or
            asks for something no task does.
    """
    if not instruction.strip():
        raise ConfigError(
            f"instruction {instruction!r} is empty; say what to do, e.g. 'lift the red block'"
        )
    try:
        parse = _parse(tokenize(instruction))
    except ConfigError as e:  # "the red blue block"
        raise ConfigError(f"instruction {instruction!r}: {e}") from None
    rules = _Rules(instruction, parse)
    unique: dict[str, Reading] = {}
    for r in rules.readings():
        unique.setdefault(r.spec.format(), r)
    if len(unique) > 1:
        raise AmbiguousInstruction(instruction, tuple(unique.values()))
    return next(iter(unique.values()))


def infer_task(instruction: str) -> TaskSpec:
    """The task spec an instruction is read as (:func:`read_instruction` without the notes)."""
    return read_instruction(instruction).spec
