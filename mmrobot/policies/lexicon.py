"""Rewrite an instruction into the words the policy was trained on (pure Python).

A policy reads its instruction as bytes, and it has only seen the words of its training
templates: "crimson" shares no byte with "red". A checkpoint may carry a lexicon
(``language.vocabulary`` and ``language.lexicon``, built from WordNet by
:func:`mmrobot.policies.wordnet.build_lexicon` and added by ``mmrobot policy lexicon``);
the tokenizer then rewrites each instruction before encoding it:

1. lower case, words split on white space, punctuation at a word's ends dropped;
2. the longest run of up to three words that is a lexicon entry ("take hold of") is
   replaced by its training word;
3. a training word stays; an entry is replaced; otherwise the regular English inflections
   are undone (Princeton WordNet's ``morphy`` detachment rules: "raises" -> "raise",
   "smaller" -> "small"; irregular forms such as "goes" are table entries) and the base
   form is looked up the same way. Without WordNet at run time a base form cannot be
   checked, so a rule applies only where at least three letters precede the suffix
   ("thing" is not "the" + "ing");
4. a word still unknown stays as it is: the policy sees it as before.

A checkpoint without a lexicon reads its instructions unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["Lexicon", "training_vocabulary"]

# WordNet's morphy detachment rules (suffix, replacement), nouns, verbs and adjectives.
_DETACH = (
    ("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
    ("men", "man"), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
    ("ing", "e"), ("ing", ""), ("er", ""), ("est", ""), ("er", "e"), ("est", "e"),
)  # fmt: skip
_MAX_RUN = 3
_MIN_STEM = 3
_PUNCT = ".,;:!?\"'()[]{}"


class Lexicon:
    """A closed training vocabulary and a table of other words that mean its words.

    Args:
        vocabulary: the training instructions' words.
        table: ``{word or "multi_word": training word}``; every value must be in
            ``vocabulary``.
    """

    def __init__(self, vocabulary: Iterable[str], table: Mapping[str, str]) -> None:
        self.vocabulary = frozenset(w.lower() for w in vocabulary)
        self.table = {k.lower(): v.lower() for k, v in table.items()}
        stray = sorted({v for v in self.table.values() if v not in self.vocabulary})
        if stray:
            raise ValueError(f"lexicon targets {stray[:5]} are not in the training vocabulary")

    def __bool__(self) -> bool:
        return bool(self.vocabulary)

    def _word(self, word: str) -> str:
        if word in self.vocabulary:
            return word
        if word in self.table:
            return self.table[word]
        for suffix, repl in _DETACH:
            if word.endswith(suffix) and len(word) - len(suffix) >= _MIN_STEM:
                base = word[: -len(suffix)] + repl
                if base in self.vocabulary:
                    return base
                if base in self.table:
                    return self.table[base]
        return word

    def normalize(self, text: str) -> str:
        """The instruction in training words, where the lexicon knows them."""
        words = [w.strip(_PUNCT) for w in text.lower().split()]
        words = [w for w in words if w]
        out: list[str] = []
        i = 0
        while i < len(words):
            for n in range(min(_MAX_RUN, len(words) - i), 1, -1):
                key = "_".join(words[i : i + n])
                if key in self.table:
                    out.append(self.table[key])
                    i += n
                    break
            else:
                out.append(self._word(words[i]))
                i += 1
        return " ".join(out)


def training_vocabulary(instructions: Iterable[str]) -> set[str]:
    """The words of the training instructions, as :meth:`Lexicon.normalize` splits them."""
    return {w.strip(_PUNCT) for text in instructions for w in text.lower().split()} - {""}
