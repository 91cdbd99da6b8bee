"""CSV for every list: `?format=csv` or `Accept: text/csv`, one row per result, nested fields flattened.

A CSV request of a list without `page` or `after` streams the whole list (all pages, filters and ordering
applied) in chunks of `CHUNK` rows, each serialized like a JSON page; with `page` or `after` it is that
one page, rendered by `CSVRenderer` as before. Detail endpoints render their object as one row.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from rest_framework import serializers
from rest_framework.renderers import BaseRenderer

from analytics.api import params
from analytics.api.throttles import export_check
from analytics.infra import inflight

CHUNK = 1000
# An offset walk re-reads every skipped row on each page: fewer, larger pages.
OFFSET_CHUNK = 5000

# OWASP CSV injection: a spreadsheet runs a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(_FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


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


class CSVTable:
    """CSV text of rows written in batches: the header from the first row, then one line per row."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer: csv.DictWriter | None = None

    def text(self, rows: Iterable[dict[str, object]]) -> str:
        for row in rows:
            if self.writer is None:
                self.writer = csv.DictWriter(self.buffer, fieldnames=list(row), extrasaction="ignore")
                self.writer.writeheader()
            self.writer.writerow({key: _cell(value) for key, value in row.items()})
        text = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        return text


def csv_text(rows: Iterable[dict[str, object]]) -> str:
    return CSVTable().text(rows)


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return csv_text(_rows(data)).encode()


# --- the whole list, streamed -----------------------------------------------------------------------------


def whole_list_wanted(request) -> bool:
    """CSV was negotiated and no page was named: the caller wants every row. A bad `page_size` is a
    400 all the same, as on the JSON list; a caller over the `expensive` rate gets a 429."""
    renderer = getattr(request, "accepted_renderer", None)
    wanted = getattr(renderer, "format", None) == "csv" and not params.page_named(request)
    if wanted:
        params.page_size(request)
        export_check(request)
    return wanted


def serializer_header(serializer) -> list[str]:
    """The flattened column names a serializer's rows get (nested serializers as `outer.inner`)."""
    names: list[str] = []
    for name, field in serializer.fields.items():
        if isinstance(field, serializers.Serializer):
            names += [f"{name}.{inner}" for inner in serializer_header(field)]
        else:
            names.append(name)
    return names


def csv_stream(
    request, chunks: Iterable[list[dict]], header: list[str] | None = None
) -> StreamingHttpResponse:
    """Serialized chunks as one CSV download, produced while the client reads it (one write per chunk).
    An empty list is `header` alone (when the caller knows it), so readers still find the columns."""

    place = inflight.held(request)

    def body() -> Iterator[bytes]:
        table = CSVTable()
        for chunk in chunks:
            if place is not None:
                place.refresh()  # a long download keeps its place among the costly requests
            yield table.text(_flatten(row) for row in chunk).encode()
        if table.writer is None and header:
            line = io.StringIO()
            csv.writer(line).writerow(header)
            yield line.getvalue().encode()

    response = StreamingHttpResponse(body(), content_type="text/csv; charset=utf-8")
    path = request.path.removeprefix("/api/v1/").strip("/").removesuffix(".csv")  # images.csv: a suffix
    name = re.sub(r"[^A-Za-z0-9.]+", "-", path) or "export"
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


def queryset_chunks(queryset: QuerySet, size: int | None = None) -> Iterator[list]:
    """A queryset's rows in order, `size` at a time, without holding a transaction open.

    Ordered by the primary key alone: keyset chunks, each a short query of its own. Any other order:
    one server-side cursor; outside a transaction Django declares it WITH HOLD, so PostgreSQL keeps the
    result past the implicit commit and no snapshot stays open while a slow client reads."""
    size = size or CHUNK
    ordering = [str(term) for term in queryset.query.order_by]
    if ordering in (["id"], ["pk"], ["-id"], ["-pk"]):
        lookup = "pk__lt" if ordering[0].startswith("-") else "pk__gt"
        chunk = list(queryset[:size])
        while chunk:
            yield chunk
            if len(chunk) < size:
                return
            chunk = list(queryset.filter(**{lookup: chunk[-1].pk})[:size])
        return
    chunk = []
    for row in queryset.iterator(chunk_size=size):
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def offset_chunks(fetch: Callable[..., list], size: int | None = None) -> Iterator[list]:
    """Walk `fetch(limit=, offset=)` (an ORDER BY ... LIMIT OFFSET selector) until a short page."""
    size = size or OFFSET_CHUNK
    offset = 0
    while True:
        rows = fetch(limit=size, offset=offset)
        if rows:
            yield rows
        if len(rows) < size:
            return
        offset += size


def keyset_chunks(fetch: Callable[..., tuple[list, object]]) -> Iterator[list]:
    """Walk `fetch(after=, limit=) -> (rows, next key or None)` until the last page."""
    after = None
    while True:
        rows, after = fetch(after=after, limit=CHUNK)
        if rows:
            yield rows
        if after is None:
            return


class CSVListMixin:
    """`list()` of a generic view: a whole-list CSV request streams every filtered, ordered row."""

    def list(self, request, *args, **kwargs):
        if whole_list_wanted(request):
            queryset = self.filter_queryset(self.get_queryset())
            chunks = (self.csv_chunk(rows) for rows in queryset_chunks(queryset))
            return csv_stream(request, chunks, header=serializer_header(self.get_serializer()))
        return super().list(request, *args, **kwargs)

    def csv_chunk(self, rows: list) -> list[dict]:
        return self.get_serializer(rows, many=True).data
