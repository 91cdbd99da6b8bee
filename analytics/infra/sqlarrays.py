"""Lists sent to PostgreSQL as one array literal (`'{1,2,3}'`, cast `::bigint[]` in the statement).

A list bound as a Python list is dumped item by item by the driver's array dumper, in Python, about a
microsecond each (with an isinstance walk per item); a deletion of 20,000 tags sends such lists to several
statements, and ingest sends one per column of every table it writes. The literal is one string.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime


def int_array(values: Iterable[int]) -> str:
    """`values` (whole numbers) as a PostgreSQL array literal."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


def _element(value: object) -> str:
    if value is None:
        return "NULL"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return '"' + value.isoformat() + '"'
    text = str(value)
    # quoted, so that commas, braces, spaces and the word NULL stay text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def array_literal(values: Iterable[object]) -> str:
    """`values` (None, booleans, whole numbers, datetimes or text) as a PostgreSQL array literal, cast in
    the statement to the column's array type (`%s::text[]`, `%s::timestamptz[]`)."""
    return "{" + ",".join(map(_element, values)) + "}"
