"""Query parameters as the API reads them; a value that cannot be used is a 400 with a clear message."""

from __future__ import annotations

from analytics.errors import InvalidRequest


def keyset_param(value: str | None, *, parts: int) -> tuple[int, ...] | None:
    """`?after=12.345` as a tuple of ints; `InvalidRequest` (400) when malformed."""
    if not value:
        return None
    try:
        key = tuple(int(v) for v in value.split("."))
    except ValueError:
        key = ()
    if len(key) != parts:
        raise InvalidRequest(f"after must be {parts} integers joined by '.'")
    return key
