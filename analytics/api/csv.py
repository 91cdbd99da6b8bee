"""`?format=csv` or `Accept: text/csv` for every list: one row per result, nested fields flattened."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

from rest_framework.renderers import BaseRenderer


def _flatten(value: object, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    if isinstance(value, list | tuple):
        value = ";".join(str(v if not isinstance(v, list | tuple) else " ".join(map(str, v))) for v in value)
    return {prefix.rstrip("."): "" if value is None else value}


def _rows(data: object) -> list[dict[str, object]]:
    if isinstance(data, dict) and isinstance(data.get("results"), list):
        data = data["results"]  # a page: its rows (the next link is in the Link-less JSON only)
    if isinstance(data, dict):
        data = [data]
    return [_flatten(row) for row in data or []]


def csv_lines(rows: Iterable[dict[str, object]]) -> Iterator[str]:
    """CSV text line by line: the header from the first row, then one line per row."""
    buffer = io.StringIO()
    writer = None
    for row in rows:
        if writer is None:
            writer = csv.DictWriter(buffer, fieldnames=list(row), extrasaction="ignore")
            writer.writeheader()
        writer.writerow(row)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return "".join(csv_lines(_rows(data))).encode()
