"""Mutated specs and plans for the front-door property tests (tests/test_fuzz.py, bench/fuzz_specs.py).

A mutation takes a valid document and changes one place in it: deletes a key, swaps a value for
one of another type (huge, negative, NaN, unicode, deeply nested, empty), adds an unknown key, or
replaces the whole document with something that is not a mapping. Several mutations stack.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

ODD_VALUES = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "🙂", "Ünïcödé", "../../etc/passwd", "a" * 5000, "${HOME}", "\x00", "1e999"]),
    st.lists(st.integers(), max_size=4),
    st.recursive(st.integers() | st.text(max_size=5), lambda inner: st.dictionaries(st.text(max_size=5), inner,
                                                                                    max_size=3), max_leaves=12),
    # A fresh copy each draw: a later mutation adds into it, and a shared constant would carry that into the
    # next case (hypothesis then sees a different strategy and stops with FlakyStrategyDefinition).
    st.builds(lambda: {"a": {"b": {"c": {"d": {"e": {"f": {"g": [[[[[[1]]]]]]}}}}}}}),
)
NOT_A_MAPPING = st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3))


def places(document: Any, path: tuple = ()) -> list[tuple]:
    """Every key path and list index in a document."""
    found = [path]
    if isinstance(document, dict):
        for key, value in document.items():
            found += places(value, (*path, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += places(value, (*path, index))
    return found


def _parent(document: Any, path: tuple) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


@st.composite
def mutated(draw: Any, valid: dict) -> Any:
    """`valid`, changed in one to three places."""
    document = copy.deepcopy(valid)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not isinstance(document, dict | list):
            break
        path = draw(st.sampled_from(places(document)))
        kind = draw(st.sampled_from(["delete", "replace", "add", "replace", "whole"] if path else ["whole", "add"]))
        if kind == "whole":
            return draw(NOT_A_MAPPING)
        if kind == "add":
            target = document
            for key in path:
                target = target[key]
            if isinstance(target, dict):
                target[draw(st.text(min_size=1, max_size=12))] = draw(ODD_VALUES)
            elif isinstance(target, list):
                target.append(draw(ODD_VALUES))
            continue
        parent = _parent(document, path)
        if kind == "delete":
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(ODD_VALUES)
    return document
