"""Build a policy's lexicon from Princeton WordNet 3.0: unseen words -> training words.

A policy trained on a few instruction templates knows a closed vocabulary; a user's
"crimson" or "raise" means nothing to it. This module reads the WordNet database files
(the ``wndb(5WN)`` format: ``index.POS`` lists a lemma's synsets in order of sense
frequency, ``data.POS`` holds each synset's lemmas and typed pointers) and maps every
WordNet lemma that is not in the training vocabulary to the training word it means, when
WordNet links them closely enough. The table is stored in the checkpoint
(``language.lexicon``) and applied by :class:`mmrobot.policies.lexicon.Lexicon` before
tokenization, so WordNet is needed only to build it (Debian/Ubuntu: ``apt-get install
wordnet-base``), never at run time.

Which links count (a word may replace another only if it means the same or narrower):

* the same synset (synonyms: "crimson" and "red" share one), cost 0;
* one "lateral" pointer: similar to (``&``), also see (``^``), derivationally related
  (``+``), pertainym (``\\``), verb group (``$``), cost 1;
* hypernyms, up to two levels ("navy" is a kind of "blue"), or one hyponym level
  ("container" is more general than "bin"), each level cost 1, after at most one lateral
  pointer. Up-then-down paths (siblings: "red" and "blue" are both colours) and antonyms
  are never followed.

A lemma maps to the training word with the lowest cost (at most ``max_cost``), ties
broken by the lemma's more frequent sense, then alphabetically, so the table is
deterministic. Inflected forms from the WordNet exception lists ("bigger" -> "big") are
added; regular inflections are undone at run time by the lexicon.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mmrobot.core.errors import ConfigError

__all__ = [
    "WORDNET_DIRS",
    "find_wordnet",
    "WordNet",
    "build_lexicon",
    "add_lexicon",
    "remove_lexicon",
]

#: Where WordNet's database files are looked for: $WNSEARCHDIR (WordNet's own variable),
#: then the Debian/Ubuntu and Homebrew locations.
WORDNET_DIRS = ("/usr/share/wordnet", "/opt/homebrew/share/wordnet", "/usr/local/share/wordnet")

_POS = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
_LATERAL = {"&", "^", "+", "\\", "$"}
_UP = {"@", "@i"}
_DOWN = {"~", "~i"}

Synset = tuple[str, int]  # (pos letter, byte offset in data.POS)


def find_wordnet(directory: str | Path | None = None) -> Path:
    """The folder holding WordNet's ``index.noun`` and ``data.noun`` files.

    Raises:
        ConfigError: none found, with the install hint.
    """
    candidates = [directory] if directory else [os.environ.get("WNSEARCHDIR"), *WORDNET_DIRS]
    for c in candidates:
        if c and (Path(c) / "index.noun").is_file() and (Path(c) / "data.noun").is_file():
            return Path(c)
    looked = ", ".join(str(c) for c in candidates if c)
    raise ConfigError(
        f"WordNet 3.0 database files (index.noun, data.noun, ...) not found in {looked}. "
        "Install them (Debian/Ubuntu: sudo apt-get install wordnet-base; macOS: brew install "
        "wordnet) or point WNSEARCHDIR at the folder that holds them."
    )


class WordNet:
    """The parts of a WordNet database this module needs, read once.

    Attributes:
        senses: lemma ("take_hold") -> part of speech -> its synsets, most frequent first.
        lemmas: synset -> its lemmas, lower case.
        pointers: synset -> (pointer symbol, target synset) pairs.
        exceptions: inflected form -> base forms, from the ``POS.exc`` files.
    """

    def __init__(self, directory: str | Path | None = None) -> None:
        root = find_wordnet(directory)
        self.directory = root
        self.senses: dict[str, dict[str, list[Synset]]] = {}
        self.lemmas: dict[Synset, list[str]] = {}
        self.pointers: dict[Synset, list[tuple[str, Synset]]] = {}
        self.exceptions: dict[str, list[str]] = {}
        for name, pos in _POS.items():
            self._read_index(root / f"index.{name}", pos)
            self._read_data(root / f"data.{name}", pos)
            exc = root / f"{name}.exc"
            if exc.is_file():
                for line in exc.read_text(encoding="latin-1").splitlines():
                    form, *bases = line.split()
                    self.exceptions.setdefault(form, []).extend(bases)

    def _read_index(self, path: Path, pos: str) -> None:
        # lemma pos synset_cnt p_cnt [ptr_symbol...] sense_cnt tagsense_cnt offset...
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):  # the licence header
                continue
            f = line.split()
            p_cnt = int(f[3])
            offsets = [int(o) for o in f[6 + p_cnt :]]
            self.senses.setdefault(f[0], {})[pos] = [(pos, o) for o in offsets]

    def _read_data(self, path: Path, pos: str) -> None:
        # offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt [sym offset pos s/t]...
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  "):
                continue
            f = line.split(" | ", 1)[0].split()
            key = (pos, int(f[0]))
            w_cnt = int(f[3], 16)
            words = f[4 : 4 + 2 * w_cnt : 2]
            # adjectives carry a syntactic marker: "big(a)", "galore(ip)"
            self.lemmas[key] = [w.split("(", 1)[0].lower() for w in words]
            i = 4 + 2 * w_cnt
            p_cnt = int(f[i])
            ptrs = []
            for j in range(p_cnt):
                sym, off, tpos = f[i + 1 + 4 * j : i + 4 + 4 * j]
                ptrs.append((sym, ("a" if tpos == "s" else tpos, int(off))))
            self.pointers[key] = ptrs

    def neighbours(self, synset: Synset, symbols: set[str]) -> list[Synset]:
        return [t for s, t in self.pointers.get(synset, ()) if s in symbols]


def _synset_cost(wn: WordNet, start: Synset, targets: Mapping[Synset, str], max_cost: int):
    """(cost, training word) of the cheapest allowed path from ``start`` to a synset that
    holds a training word, or None."""
    best: tuple[int, str] | None = None

    def offer(cost: int, synset: Synset) -> None:
        nonlocal best
        if cost <= max_cost and synset in targets:
            cand = (cost, targets[synset])
            if best is None or cand < best:
                best = cand

    firsts = [(0, start)] + [(1, s) for s in wn.neighbours(start, _LATERAL)]
    for c0, s0 in firsts:
        offer(c0, s0)
        frontier = [s0]
        for level in (1, 2):  # up to two hypernym levels
            frontier = [h for s in frontier for h in wn.neighbours(s, _UP)]
            for h in frontier:
                offer(c0 + level, h)
        for d in wn.neighbours(s0, _DOWN):  # one hyponym level
            offer(c0 + 1, d)
    return best


def build_lexicon(
    vocabulary: Iterable[str],
    wordnet: WordNet | None = None,
    max_cost: int = 2,
    senses: int = 1,
) -> dict[str, str]:
    """Map WordNet lemmas outside ``vocabulary`` to the training word they mean.

    Args:
        vocabulary: the training instructions' words (lower case).
        wordnet: a loaded database (default: read from :func:`find_wordnet`).
        max_cost: the dearest path kept (see the module docstring).
        senses: how many of a word's most frequent senses per part of speech take part,
            on both sides. With 1, "blue" is the colour and not "sad", so "down" (which
            shares a rare sense with it) does not become "blue".

    Returns:
        ``{lemma: training word}``, lemmas with spaces as ``_`` ("take_hold_of"), sorted.
    """
    vocab = {w.lower() for w in vocabulary}
    if not vocab:
        raise ConfigError("build_lexicon needs a non-empty training vocabulary")
    wn = wordnet or WordNet()

    def common(lemma: str) -> list[tuple[int, Synset]]:
        return [
            (rank, s)
            for by_pos in wn.senses.get(lemma, {}).values()
            for rank, s in enumerate(by_pos[:senses])
        ]

    targets: dict[Synset, str] = {}
    for word in sorted(vocab):
        for _, s in common(word):
            targets.setdefault(s, word)  # a synset with two training words keeps the first
    table: dict[str, str] = {}
    for lemma in wn.senses:
        if lemma in vocab:
            continue
        best: tuple[int, int, str] | None = None
        for rank, s in common(lemma):
            found = _synset_cost(wn, s, targets, max_cost)
            if found is not None:
                cand = (found[0], rank, found[1])
                if best is None or cand < best:
                    best = cand
        if best is not None:
            table[lemma] = best[2]
    for form, bases in wn.exceptions.items():
        if form in vocab or form in table:
            continue
        for base in bases:
            target = base if base in vocab else table.get(base)
            if target is not None:
                table[form] = target
                break
    return dict(sorted(table.items()))


def add_lexicon(
    checkpoint: str | Path,
    dataset: str | Path,
    wordnet: str | Path | None = None,
    senses: int = 2,
    max_cost: int = 2,
) -> dict[str, Any]:
    """Build the lexicon of ``dataset``'s training instructions and store it in the
    checkpoint's ``config.json`` (``language.vocabulary`` and ``language.lexicon``).

    Episodes recorded with held-out phrasings are not read: their words must stay unseen.
    Defaults (2 senses, cost 2) were chosen on a development word list, before the held-out
    phrasings' table was looked at (see docs/policy.md).

    Returns:
        a summary: entries, vocabulary size, episodes read and skipped, settings.
    """
    from mmrobot.envs.dataset import DemoDataset
    from mmrobot.policies.checkpoint import read_checkpoint_config, rewrite_checkpoint_config
    from mmrobot.policies.lexicon import training_vocabulary

    cfg, _ = read_checkpoint_config(checkpoint)
    db = WordNet(wordnet)  # fails early, with the install hint, when WordNet is missing
    ds = DemoDataset(dataset)
    try:
        infos = list(ds.episodes())
    finally:
        ds.close()
    train = [e.instruction for e in infos if e.split == "train"]
    if not train:
        raise ConfigError(f"{dataset} holds no episodes with training phrasings")
    vocabulary = training_vocabulary(train)
    table = build_lexicon(vocabulary, db, max_cost, senses)
    language = dataclasses.replace(
        cfg.language, vocabulary=tuple(sorted(vocabulary)), lexicon=table
    )
    info = {
        "dataset": str(dataset),
        "wordnet": str(db.directory),
        "senses": senses,
        "max_cost": max_cost,
        "entries": len(table),
        "vocabulary": len(vocabulary),
        "episodes": len(train),
        "skipped": len(infos) - len(train),
    }
    rewrite_checkpoint_config(
        checkpoint, dataclasses.replace(cfg, language=language), {"lexicon": info}
    )
    return info


def remove_lexicon(checkpoint: str | Path) -> None:
    """Drop a checkpoint's lexicon: instructions are read as they are again."""
    from mmrobot.policies.checkpoint import read_checkpoint_config, rewrite_checkpoint_config

    cfg, _ = read_checkpoint_config(checkpoint)
    language = dataclasses.replace(cfg.language, vocabulary=(), lexicon={})
    rewrite_checkpoint_config(
        checkpoint, dataclasses.replace(cfg, language=language), {"lexicon": None}
    )
