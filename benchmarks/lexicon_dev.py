"""How the lexicon's settings were chosen: a development word list, scored per setting.

The list was written before the held-out phrasings' lexicon entries were looked at: words
a user might type for the training words (with the acceptable readings), and words that
must stay unmapped (they mean no training word). For each setting of
:func:`mmrobot.policies.wordnet.build_lexicon` (senses per part of speech, largest path
cost) it prints how many development words map to an acceptable training word, which map
to a wrong one, and which stop words get mapped. Needs WordNet 3.0 (``wordnet-base``).

Usage: python benchmarks/lexicon_dev.py [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, print_table, write_json  # noqa: E402

# The release's training vocabulary (the words of mmrobot.envs.instructions' train split).
VOCABULARY = [
    "big",
    "bin",
    "block",
    "blue",
    "cube",
    "go",
    "grab",
    "green",
    "in",
    "into",
    "large",
    "left",
    "lift",
    "little",
    "move",
    "of",
    "on",
    "pick",
    "place",
    "push",
    "put",
    "reach",
    "red",
    "right",
    "slide",
    "small",
    "stack",
    "target",
    "the",
    "to",
    "top",
    "up",
    "yellow",
    "zone",
]
# development word -> acceptable training words
DEV = {
    "maroon": "red", "cherry": "red", "cerulean": "blue", "sapphire": "blue",
    "turquoise": "blue green", "jade": "green", "amber": "yellow", "mustard": "yellow",
    "minuscule": "small little", "microscopic": "small little", "petite": "little small",
    "enormous": "big large", "massive": "big large", "gigantic": "big large",
    "slab": "block", "chunk": "block", "cuboid": "cube block",
    "grasp": "grab", "seize": "grab", "take_hold_of": "grab",
    "elevate": "lift", "hoist": "lift", "thrust": "push", "shift": "move push slide",
    "receptacle": "bin", "carton": "bin", "bucket": "bin", "crate": "bin",
    "deposit": "place put", "approach": "reach move go", "glide": "slide",
    "drag": "push slide", "rise": "lift", "descend": "",
}  # fmt: skip
STOP = [
    "please",
    "over",
    "onto",
    "then",
    "a",
    "and",
    "it",
    "hand",
    "table",
    "floor",
    "your",
    "gripper",
    "arm",
    "near",
    "down",
    "with",
    "very",
    "slowly",
    "toward",
    "below",
    "under",
    "beside",
    "first",
]


def score(table: dict[str, str]) -> dict[str, object]:
    judged = {w: ok.split() for w, ok in DEV.items()}
    correct = [w for w, ok in judged.items() if table.get(w) in ok]
    wrong = [f"{w}->{table[w]}" for w, ok in judged.items() if w in table and table[w] not in ok]
    stop = [f"{w}->{table[w]}" for w in STOP if w in table]
    return {"entries": len(table), "correct": correct, "wrong": wrong, "stop_mapped": stop}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    from mmrobot.policies.wordnet import WordNet, build_lexicon

    wn = WordNet()
    results, rows = [], []
    scorable = sum(1 for ok in DEV.values() if ok)
    for senses in (1, 2, 3, 99):
        for max_cost in (1, 2):
            r = {"senses": senses, "max_cost": max_cost, **score(
                build_lexicon(VOCABULARY, wn, max_cost=max_cost, senses=senses))}  # fmt: skip
            results.append(r)
            rows.append([
                "all" if senses == 99 else senses, max_cost, r["entries"],
                f"{len(r['correct'])}/{scorable}", ", ".join(r["wrong"]) or "-",
                ", ".join(r["stop_mapped"]) or "-",
            ])  # fmt: skip
    print_table(
        f"lexicon settings on the development list ({len(DEV)} words, {len(STOP)} stop words)",
        ["senses", "max cost", "entries", "correct", "wrong", "stop words mapped"],
        rows,
    )
    write_json(args.json, {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
