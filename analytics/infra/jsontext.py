"""JSON text from callers (request bodies, a pasted Docker config), parsed with a bound on nesting.

Python's parser recurses once per level, so a document nested deep enough raises RecursionError; the
depth is counted first and a deeper document is refused as malformed. NaN and Infinity are refused too,
as strict JSON does.
"""

from __future__ import annotations

import json
import re

# Layerlens reads no document deeper than a few levels (a Docker config: 3).
MAX_DEPTH = 32

# A string (skipped whole, whatever brackets it holds) or a bracket.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


class TooDeep(ValueError):
    pass


def _constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def depth_check(text: str, *, max_depth: int = MAX_DEPTH) -> None:
    depth = 0
    for token in _TOKEN.finditer(text):
        mark = token.group()
        if mark in "[{":
            depth += 1
            if depth > max_depth:
                raise TooDeep(f"nested deeper than {max_depth} levels")
        elif mark in "]}":
            depth -= 1


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> object:
    """`json.loads` refusing (ValueError) a document nested deeper than `max_depth`, NaN and Infinity."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    # no document nests deeper than it has brackets (a bracket inside a string only makes this count
    # larger): a small document, as most are, needs no walk over its strings
    if text.count("{") + text.count("[") > max_depth:
        depth_check(text, max_depth=max_depth)
    try:
        return json.loads(text, parse_constant=_constant)
    except RecursionError:  # below the count, but the interpreter's stack is already deep
        raise TooDeep("nested too deep") from None
