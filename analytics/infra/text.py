"""Text from a registry or an exception, made storable: PostgreSQL text takes no NUL, and UTF-8 cannot
encode a lone surrogate (both are valid in JSON: `\\u0000`, `\\ud800`)."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with NUL and lone surrogates written as escapes (`\\x00`, `\\ud800`), so what a registry
    sent stays readable in an error message instead of failing the write that records it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
