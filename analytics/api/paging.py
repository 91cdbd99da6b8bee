"""How lists are cut into pages: one offset page and one keyset page, both reading `page`, `page_size`
and `after` through `params` and building their links with `link`.

- `OffsetPage` (`?page=&page_size=`) is DRF's `pagination_class` for querysets (`count`, `next`,
  `previous`, `results`), and pages ORDER BY ... LIMIT OFFSET selectors without a count
  (`selector_response`: `next`, `previous`, `results`).
- `UncountedOffsetPage` is `OffsetPage` without the count, for lists too long to count on every request.
- `KeysetPage` (`?after=&page_size=`) pages selectors that return the next key (`next`, `results`,
  and `count` where the list has a maintained one).

A CSV request without `page` or `after` streams the whole list instead (`analytics.api.csv`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.core.paginator import Paginator as DjangoPaginator
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from analytics.api import params
from analytics.api.csv import csv_stream, keyset_chunks, offset_chunks, serializer_header, whole_list_wanted


def link(request, name: str, value: object | None) -> str:
    """This request's URL with one query parameter set (or removed, for None)."""
    url = request.build_absolute_uri()
    return remove_query_param(url, name) if value is None else replace_query_param(url, name, value)


def page_link(request, number: int) -> str:
    return link(request, "page", None if number == 1 else number)


class _KnownCountPaginator(DjangoPaginator):
    """Django's paginator with the list's length given (a maintained count), never `count(*)`."""

    def __init__(self, object_list, per_page, *, known_count: int, **kwargs) -> None:
        super().__init__(object_list, per_page, **kwargs)
        self.__dict__["count"] = known_count  # the cached_property's slot


class OffsetPage(PageNumberPagination):
    """`?page=` (from 1; `last` on counted lists) and `?page_size=` (capped at `MAX_PAGE_SIZE`).

    `use_count(n)` before paginating gives the list's length from maintained figures, so the page
    costs its rows, not a `count(*)` over the scope."""

    page_size = params.DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = params.MAX_PAGE_SIZE

    def use_count(self, count: int) -> None:
        self.django_paginator_class = partial(_KnownCountPaginator, known_count=count)

    def get_page_size(self, request) -> int:
        return params.page_size(request)

    def get_page_number(self, request, paginator) -> int:
        return params.page_number(request, last=paginator.num_pages)

    def get_next_link(self) -> str | None:
        return page_link(self.request, self.page.next_page_number()) if self.page.has_next() else None

    def get_previous_link(self) -> str | None:
        return page_link(self.request, self.page.previous_page_number()) if self.page.has_previous() else None

    def get_schema_operation_parameters(self, view) -> list[dict]:
        return [
            {
                "name": p.name,
                "required": False,
                "in": "query",
                "description": p.description,
                "schema": {"type": "integer"},
            }
            for p in params.PAGE_PARAMETERS
        ]

    def selector_response(self, request, fetch: Callable[..., list], serializer_class) -> Response:
        """A page of `fetch(limit=, offset=)`: one row more than the page tells whether a next page
        exists, so no count(*) over the whole answer is ever run."""
        number, size = params.page_number(request), params.page_size(request)
        if whole_list_wanted(request):
            chunks = (serializer_class(rows, many=True).data for rows in offset_chunks(fetch))
            return csv_stream(request, chunks, header=serializer_header(serializer_class()))
        rows = fetch(limit=size + 1, offset=(number - 1) * size)
        return Response(
            {
                "next": page_link(request, number + 1) if len(rows) > size else None,
                "previous": page_link(request, number - 1) if number > 1 else None,
                "results": serializer_class(rows[:size], many=True).data,
            }
        )


class UncountedOffsetPage(OffsetPage):
    """Offset pages of a list too long to count on every request (`tags/`, `tag-events/`): `next` from one
    row more than the page, no `count` and no `page=last`."""

    def paginate_queryset(self, queryset, request, view=None):
        self.request = request
        self.number, size = params.page_number(request), params.page_size(request)
        rows = list(queryset[(self.number - 1) * size : self.number * size + 1])
        self.has_next = len(rows) > size
        return rows[:size]

    def get_paginated_response(self, data) -> Response:
        return Response(
            {
                "next": page_link(self.request, self.number + 1) if self.has_next else None,
                "previous": page_link(self.request, self.number - 1) if self.number > 1 else None,
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema: dict) -> dict:
        described = super().get_paginated_response_schema(schema)
        described["required"] = [name for name in described.get("required", []) if name != "count"]
        described["properties"].pop("count", None)
        return described


class KeysetPage:
    """`?after=` (the key in the previous page's `next` link, `parts` integers) and `?page_size=`."""

    def __init__(self, request, *, parts: int) -> None:
        self.request = request
        self.size = params.page_size(request)
        self.after = params.after(request, parts=parts)

    @property
    def whole_list(self) -> bool:
        return whole_list_wanted(self.request)

    def stream(
        self,
        fetch: Callable[..., tuple[list, object]],
        rows: Callable[[list], list[dict]],
        *,
        header: list[str] | None = None,
    ):
        """The whole list as CSV: `fetch(after=, limit=)` walked to its last page (`header` alone when
        the list is empty)."""
        return csv_stream(self.request, (rows(page) for page in keyset_chunks(fetch)), header=header)

    def response(
        self,
        results: list[dict],
        next_key: tuple | int | None,
        *,
        count: int | None = None,
        offset_shaped: bool = False,
    ) -> Response:
        """`next` and `results`, `count` when given; `offset_shaped` adds `previous` (always null) for a
        list that answers in offset pages on other requests, so both answers have the same keys."""
        body: dict[str, object] = {} if count is None else {"count": count}
        body["next"] = None if next_key is None else link(self.request, "after", key_text(next_key))
        if offset_shaped:
            body["previous"] = None
        body["results"] = results
        return Response(body)


def key_text(key: tuple | int) -> str:
    return ".".join(str(v) for v in (key if isinstance(key, tuple) else (key,)))
