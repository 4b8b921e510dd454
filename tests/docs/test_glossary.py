"""The glossary defines the words the pages use in a sense of their own, and each page links its first
use of such a word to the definition (outside code blocks, headings and inline code; an inline code
span that is one of the code-like words itself, `acc_norm` or `wgmma`, counts as a use and can be
linked)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers import ROOT
from tests.helpers.pages import FENCE, PAGES, SPAN
from tests.test_docs import anchors

GLOSSARY = ROOT / "docs" / "glossary.md"
# A word's forms on a page -> its entry (the anchor of its heading in glossary.md).
TERMS = {
    r"LLMDcos": "llmdcos",
    r"\bTaylor (?:activation )?scores?\b": "taylor-score",
    r"\bOBS\b": "obs",
    r"\bstand-ins?\b": "stand-in",
    r"\bembedded (?:default|model)\b": "embedded-model",
    r"\bshard groups?\b": "shard-group",
    r"\breplicas?\b": "replica",
    r"\bulps?\b": "ulp",
    r"\bacc_norm\b": "acc-and-acc_norm",
    r"\bTMA\b": "tma",
    r"\bwgmma\b": "wgmma",
    r"\bmixtures? of experts\b": "mixture-of-experts",
    r"\btotal-variation distance\b": "total-variation-distance",
}
CODE_TERMS = {r"\bacc_norm\b", r"\bwgmma\b"}  # words a page may show as code
# Entries the glossary must have besides those: the method's symbols and the pruning words.
ENTRIES = {"ds", "γ", "h", "allocation", "metric", "calibration-set", "perplexity", "memory-plan", "split-products", "tensor-core"}
_HEADING = re.compile(r"^#{1,6} .*$", flags=re.M)
_INDENTED = re.compile(r"(?<=\n\n)(?: {4}.*\n)+")  # an indented code block (a formula)
_LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")


def blanked(text: str, term: str) -> str:
    """The page with code blocks (fenced or indented), headings and inline code (other than the word itself) blanked out,
    every character kept in place so that positions still match links."""
    def blank(match: re.Match) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))

    text = _INDENTED.sub(blank, _HEADING.sub(blank, FENCE.sub(blank, text)))
    return SPAN.sub(lambda m: m.group(0) if term in CODE_TERMS and re.fullmatch(term, m.group(2)) else blank(m), text)


def unlinked_first_uses(text: str) -> list[str]:
    """The words whose first use on a page is not a link to their glossary entry."""
    bad = []
    for term, anchor in TERMS.items():
        searchable = blanked(text, term)
        first = re.search(term, searchable)
        if first is None:
            continue
        linked = any(link.start(1) <= first.start() and first.end() <= link.end(1) and link.group(2).endswith(f"glossary.md#{anchor}")
                     for link in _LINK.finditer(text))
        if not linked:
            line = text.count("\n", 0, first.start()) + 1
            bad.append(f"{first.group(0)!r} (line {line}) -> link it to glossary.md#{anchor}")
    return bad


@pytest.mark.parametrize("page", [p for p in PAGES if p != GLOSSARY], ids=lambda p: p.name)
def test_a_page_links_its_first_use_of_a_glossary_word(page):
    bad = unlinked_first_uses(page.read_text())
    assert bad == [], f"{page.name}: {bad}"


def test_the_glossary_defines_every_word_the_pages_link():
    have = anchors(GLOSSARY)
    assert set(TERMS.values()) | ENTRIES <= have, sorted(set(TERMS.values()) | ENTRIES - have)


def test_a_first_use_without_its_link_is_caught(tmp_path: Path):
    linked = "Scores give [LLMDcos](glossary.md#llmdcos); LLMDcos again. [`acc_norm`](../docs/glossary.md#acc-and-acc_norm).\n"
    assert unlinked_first_uses(linked) == []
    assert unlinked_first_uses("# LLMDcos\n\n```\nLLMDcos\n```\n" + linked) == []  # headings and code blocks are no use
    assert unlinked_first_uses("The `NaN LLMDcos` error; " + linked) == []  # nor is code that holds more than the word
    assert len(unlinked_first_uses("LLMDcos first, then " + linked)) == 1
    assert len(unlinked_first_uses(linked.replace("glossary.md#llmdcos", "method.md#llmdcos"))) == 1
