"""Whole numbers sent to PostgreSQL as one array literal (`'{1,2,3}'`, cast `::bigint[]` in the statement).

A list of ids bound as a Python list is dumped item by item by the driver, about a microsecond each; a
deletion of 20,000 tags sends such lists to several statements. The literal is one string, joined in C.
"""

from __future__ import annotations

from collections.abc import Iterable


def int_array(values: Iterable[int]) -> str:
    """`values` (whole numbers) as a PostgreSQL array literal."""
    return "{" + ",".join(map(str, map(int, values))) + "}"
