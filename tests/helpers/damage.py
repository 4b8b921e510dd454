"""Hypothesis strategies that damage a valid file the way files get damaged: a copy cut short, bytes that are
no text, another encoding, a field taken out, a field given another kind of value."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import strategies as st

from lit_activation.files import json_type

# Values of every JSON kind, to put where a field of another kind was.
OTHER_VALUES = ("x", 7, 2.5, True, [], [1, "x"], {}, {"x": 1})


def paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (keys and indices) to a value inside a JSON value."""
    found = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):  # the first few items stand for the rest
            found += paths(v, (*prefix, i))
    return found


def _parent(obj: Any, path: tuple) -> Any:
    for key in path[:-1]:
        obj = obj[key]
    return obj


@st.composite
def without_a_field(draw: st.DrawFn, obj: dict) -> dict:
    """`obj` with one field of one of its objects taken out."""
    keys = [p for p in paths(obj) if isinstance(_parent(obj, p), dict)]
    path = draw(st.sampled_from(keys))
    damaged = copy.deepcopy(obj)
    del _parent(damaged, path)[path[-1]]
    return damaged


@st.composite
def with_a_mistyped_field(draw: st.DrawFn, obj: dict) -> dict:
    """`obj` with one value anywhere in it replaced by a value of another JSON kind."""
    path = draw(st.sampled_from(paths(obj)))
    damaged = copy.deepcopy(obj)
    old = _parent(damaged, path)[path[-1]]
    _parent(damaged, path)[path[-1]] = draw(st.sampled_from([v for v in OTHER_VALUES if json_type(v) != json_type(old)]))
    return damaged


def damaged_bytes(data: bytes) -> st.SearchStrategy[bytes]:
    """A file's bytes cut at any offset, random bytes, or (a text file) its text in another encoding."""
    damaged = [st.integers(0, max(len(data) - 1, 0)).map(lambda n: data[:n]), st.binary(min_size=1, max_size=64)]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return st.one_of(damaged)
    return st.one_of(*damaged, st.sampled_from(["utf-16", "utf-32"]).map(text.encode), st.just(text.replace('"', '"\u00e9', 1).encode("latin-1")))


def damaged_json(obj: dict) -> st.SearchStrategy[bytes]:
    """A JSON object's file damaged in any of the ways above."""
    data = (json.dumps(obj, indent=2) + "\n").encode()
    return st.one_of(damaged_bytes(data), without_a_field(obj).map(lambda o: json.dumps(o).encode()),
                     with_a_mistyped_field(obj).map(lambda o: json.dumps(o).encode()))
