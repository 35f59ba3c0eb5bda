"""The words an instruction is read with: the vocabulary, the tokenizer and block noun phrases.

:mod:`mmrobot.envs.reader` reads a task spec out of the tokens and referents built here;
docs/instructions.md has the vocabulary and examples.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mmrobot.core.errors import ConfigError

__all__ = [
    "COLOR_WORDS",
    "NOUN_PHRASE_KINDS",
    "SIZE_WORDS",
    "VERB_WORDS",
    "Referent",
    "Token",
    "next_kind",
    "noun_phrase",
    "tokenize",
]


# ------------------------------------------------------------------------------ vocabulary

#: Words for each block colour and size: those of both phrasing sets and a few more.
COLOR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "ruby"),
    "green": ("green", "emerald", "lime"),
    "blue": ("blue", "navy", "azure"),
    "yellow": ("yellow", "golden", "gold", "lemon"),
}
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "smaller", "smallest", "little", "tiny"),
    "large": ("large", "larger", "largest", "big", "bigger", "biggest", "huge"),
}
#: Action verbs by class. ``move`` verbs reach when their object is the gripper or nothing
#: ("move to the red block") and carry a block otherwise ("move the red block to the bin").
VERB_WORDS: dict[str, tuple[str, ...]] = {
    "reach": ("reach", "approach", "touch", "hover", "go", "head"),
    "move": ("move", "bring", "get", "take", "position"),
    "pick": ("pick", "lift", "grab", "raise", "grasp", "grip", "hold", "hoist"),
    "push": ("push", "slide", "shove", "nudge", "drag", "sweep", "shift"),
    "put": ("put", "place", "set", "drop", "deposit", "carry", "transfer", "lay"),
    "stack": ("stack", "pile"),
}
# A block "goes"/"belongs" somewhere: the block is the subject, the verb is a put.
_PUT_INTRANSITIVE = ("goes", "belongs", "belong")
# Preposition kinds: "to" a goal, "onto" a block's top, "on" (where it is, or where it goes),
# "near" (only locates), "from" and "with" (never a goal).
_PREP_WORDS: dict[str, tuple[str, ...]] = {
    "to": ("to", "toward", "towards", "into", "for"),
    "onto": ("onto", "atop"),
    "on": ("on", "upon", "in", "inside", "within", "at", "above", "over"),
    "near": ("near", "nearest", "closest", "beside", "by", "behind", "around", "between"),
    "from": ("from", "off"),
    "with": ("with", "using", "via"),
}
_KIND_WORDS: dict[str, tuple[str, ...]] = {
    "noun": ("block", "blocks", "cube", "cubes", "box", "brick", "one", "piece", "object", "thing"),
    "other": ("other", "another"),
    "pronoun": ("it",),
    "bin": ("bin", "container", "basket", "bucket"),
    "table": ("table", "tabletop"),
    "gripper": ("gripper", "hand", "arm", "claw", "end-effector", "fingers", "yourself"),
    "zone": ("zone", "target", "area", "region", "side", "spot"),
    "neg": ("not", "don't", "dont", "never", "avoid", "without", "except", "leave", "ignore"),
    "break": ("but", "then", ",", ";", ".", "!", "?", ":"),
    "and": ("and", "or"),  # end a clause when a verb follows
    # determiners and politeness: known, carry nothing
    "skip": (
        "the", "a", "an", "this", "that", "these", "those", "your", "my", "its", "please",
        "kindly", "could", "would", "can", "will", "you", "i", "me", "we", "us", "let's",
        "want", "like", "just", "now", "there", "is", "should", "which", "carefully", "gently",
    ),
}  # fmt: skip
_PHRASES: dict[str, tuple[str, str]] = {
    "pick up": ("verb", "pick"),
    "take hold of": ("verb", "pick"),
    "grab hold of": ("verb", "pick"),
    "get hold of": ("verb", "pick"),
    "on top of": ("prep", "onto"),
    "on to": ("prep", "onto"),
    "over to": ("prep", "to"),
    "up to": ("prep", "to"),
    "next to": ("prep", "near"),
    "close to": ("prep", "near"),
    "closest to": ("prep", "near"),
    "nearest to": ("prep", "near"),
    "in front of": ("prep", "near"),
    "left of": ("prep", "near"),
    "right of": ("prep", "near"),
    "to the left of": ("prep", "near"),
    "to the right of": ("prep", "near"),
    "on the left of": ("prep", "near"),
    "on the right of": ("prep", "near"),
    "away from": ("prep", "from"),
    "off of": ("prep", "from"),
    "out of": ("prep", "from"),
    "do not": ("neg", "not"),
    "instead of": ("neg", "not"),
    "rather than": ("neg", "not"),
    "left hand": ("side", "left"),
    "right hand": ("side", "right"),
    "a little": ("skip", ""),
    "a bit": ("skip", ""),
    "right now": ("skip", ""),
    "right away": ("skip", ""),
    "all right": ("skip", ""),
}
_MAX_PHRASE = max(len(p.split()) for p in _PHRASES)


def _word_table() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for color, words in COLOR_WORDS.items():
        table.update({w: ("color", color) for w in words})
    for size, words in SIZE_WORDS.items():
        table.update({w: ("size", size) for w in words})
    for verb, words in VERB_WORDS.items():
        table.update({w: ("verb", verb) for w in words})
    table.update({w: ("verb", "put") for w in _PUT_INTRANSITIVE})
    for prep, words in _PREP_WORDS.items():
        table.update({w: ("prep", prep) for w in words})
    for kind, words in _KIND_WORDS.items():
        table.update({w: (kind, w) for w in words})
    for side in ("left", "right"):
        table.update({w: ("side", side) for w in (side, f"{side}-hand", f"{side}hand")})
    return table


_WORDS = _word_table()
_TOKEN_RE = re.compile(r"[a-z]+(?:['-][a-z]+)*|[,;.!?:]")


# ------------------------------------------------------------------------------ tokens


@dataclass(frozen=True)
class Token:
    """One word or known phrase of an instruction, with its kind and canonical value."""

    kind: str  # a key of _KIND_WORDS, or verb, prep, color, size, side, word
    value: str
    text: str


def tokenize(text: str) -> list[Token]:
    """The tokens of ``text``, lower-cased, longest known phrase first."""
    words: list[str] = []
    for w in _TOKEN_RE.findall(text.lower().replace("\u2019", "'")):
        # an unknown hyphenated word is read by its parts: "navy-blue", "sky-blue"
        words += w.split("-") if "-" in w and w not in _WORDS else [w]
    toks: list[Token] = []
    i = 0
    while i < len(words):
        for n in range(min(_MAX_PHRASE, len(words) - i), 1, -1):
            phrase = " ".join(words[i : i + n])
            if phrase in _PHRASES:
                toks.append(Token(*_PHRASES[phrase], phrase))
                i += n
                break
        else:
            kind, value = _WORDS.get(words[i], ("word", words[i]))
            toks.append(Token(kind, value, words[i]))
            i += 1
    return toks


# ------------------------------------------------------------------------------ referents


@dataclass
class Referent:
    """Something an instruction names: a block, the bin, a zone, the table or the gripper."""

    kind: str  # block, bin, zone, table, gripper
    text: str
    prep: str | None = None
    negated: bool = False
    color: str | None = None
    size: str | None = None
    side: str | None = None  # zone: which one; block: where it is ("the left red block")
    explicit: bool = False  # zone: named with a zone word ("left zone"), not a bare "left"
    pronoun: bool = False
    acted_on: bool = False  # a later "it" acts on this block
    words: str = ""  # the words from its preposition on ("on the left"), for notes

    @property
    def block(self) -> tuple[str | None, str | None]:
        return (self.color, self.size)

    def phrase(self) -> str:
        return self.words or self.text


#: Token kinds that begin (or continue) a noun phrase naming a block.
NOUN_PHRASE_KINDS = ("color", "size", "noun", "other")


def noun_phrase(toks: list[Token], i: int) -> tuple[Referent, int]:
    """The block named by the run of colour/size/block words at ``toks[i]``; the next index."""
    side = None
    if toks[i].kind == "side":
        side, i = toks[i].value, i + 1
    start, j, end = i, i, i
    while j < len(toks) and toks[j].kind in (*NOUN_PHRASE_KINDS, "word"):
        if toks[j].kind != "word":
            end = j + 1  # unknown words count only inside ("the big shiny red block")
        j += 1
    part = toks[start:end]
    text = " ".join(t.text for t in part)
    colors = {t.value for t in part if t.kind == "color"}
    sizes = {t.value for t in part if t.kind == "size"}
    for what, found in (("colours", colors), ("sizes", sizes)):
        if len(found) > 1:
            raise ConfigError(f"{text!r} names two {what} ({', '.join(sorted(found))}) at once")
    ref = Referent(
        "block",
        text,
        color=next(iter(colors), None),
        size=next(iter(sizes), None),
        side=side,
    )
    return ref, end


def next_kind(toks: list[Token], i: int) -> str | None:
    """The kind of the first token from ``toks[i]`` that is not filler; None at the end."""
    for t in toks[i:]:
        if t.kind not in ("skip", "word"):
            return t.kind
    return None
