"""The documentation's cross-references resolve.

Relative Markdown links in the README and docs/ must name a file that exists and, with a
``#fragment``, a heading in it (GitHub's anchor rule). Code and configs point into the docs as
``docs/NAME.md, "a phrase"``: the phrase must occur in that file, so moving a section
without its references fails here rather than leaving a reader at a dead end.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
QUOTED = re.compile(r'(docs/[\w-]+\.md),?\s+"([^"]+)"')
#: where code and configs quote a docs section
QUOTING = ("mmrobot/**/*.py", "benchmarks/*.py", "policies/*.toml", "*.md", "docs/*.md")


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces to hyphens."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            base = github_anchor(line.lstrip("#"))
            anchor, n = base, 0
            while anchor in found:  # GitHub numbers repeated headings
                n += 1
                anchor = f"{base}-{n}"
            found.add(anchor)
    return found


def test_github_anchor_rule():
    assert github_anchor(" Per-pixel FiLM: one (`camera.pixel_film`)") == (
        "per-pixel-film-one-camerapixel_film"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_relative_links_resolve(doc):
    broken = []
    for target in LINK.findall(doc.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        file_part, _, fragment = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{target}: no file {path.relative_to(ROOT)}")
        elif fragment and path.suffix == ".md" and fragment not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{fragment}")
    assert not broken, f"{doc.name}: " + "; ".join(broken)


def test_quoted_references_into_the_docs_exist():
    sources = [p for pattern in QUOTING for p in ROOT.glob(pattern)]
    missing = []
    for source in sources:
        text = " ".join(source.read_text(encoding="utf-8").split())  # quotes may span lines
        text = text.replace(" # ", " ")  # a TOML comment continued on the next line
        for doc, phrase in QUOTED.findall(text):
            target = ROOT / doc
            body = " ".join(target.read_text(encoding="utf-8").split()) if target.exists() else ""
            if phrase.lower() not in body.lower():
                missing.append(f'{source.relative_to(ROOT)}: {doc}, "{phrase}"')
    assert sources and not missing, "\n".join(missing)
