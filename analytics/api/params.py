"""Every query parameter the API reads, and how the schema documents it.

A value that cannot be used is an `InvalidRequest` (400, `{"detail": ...}`) naming the parameter;
none reaches a query as an exception. `page_size` above `MAX_PAGE_SIZE` is capped, as DRF does.
"""

from __future__ import annotations

from datetime import UTC, datetime, time

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter

from analytics.errors import InvalidRequest
from analytics.models import Registry
from analytics.selectors.lists import registry_lookup
from analytics.selectors.scope import Scope, scope_resolve

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_LIMIT = 1000
# Keeps an offset (page × page_size) well inside bigint.
MAX_PAGE = 10**9
# Ids and keys end up in bigint columns.
MAX_INT = 2**63 - 1
TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"", "0", "false", "no", "off"})


def check_query(request) -> None:
    """No parameter may hold a NUL byte: PostgreSQL text cannot, so no query could use it."""
    for name, values in request.query_params.lists():
        if "\x00" in name or any("\x00" in v for v in values):
            raise InvalidRequest(f"{name!r}: a NUL byte is not allowed")


# Every API view: a NUL byte in any query parameter is a 400 before the view runs. (A comment, not a
# docstring: the schema would take it as the description of every view without its own.)
class CheckedQuery:
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        check_query(request)


# --- values -----------------------------------------------------------------------------------------------


def text(request, name: str) -> str | None:
    """A string parameter; absent or empty is None."""
    return request.query_params.get(name) or None


def whole_number(
    request,
    name: str,
    *,
    default: int | None = None,
    minimum: int = 1,
    maximum: int = MAX_INT,
    cap: int | None = None,
) -> int | None:
    """An integer in [minimum, maximum], or with a `cap` at least `minimum` and at most `cap` (a larger
    value is taken as `cap`). Absent or empty is `default`."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or value < minimum or (cap is None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum < MAX_INT else f"of at least {minimum}"
        raise InvalidRequest(f"{name} must be a whole number {bound}, not {raw!r}")
    return min(value, cap) if cap is not None else value


def page_number(request, *, last: int | None = None) -> int:
    """`?page=` from 1; `page=last` too where the list is counted (`last` is then its last page)."""
    if last is not None and request.query_params.get("page") == "last":
        return last
    return whole_number(request, "page", default=1, maximum=MAX_PAGE)


def page_named(request) -> bool:
    """A page was asked for by number or by key (so a CSV is that page, not the whole list)."""
    return "page" in request.query_params or "after" in request.query_params


def page_size(request) -> int:
    return whole_number(request, "page_size", default=DEFAULT_PAGE_SIZE, cap=MAX_PAGE_SIZE)


def limit(request, *, default: int) -> int:
    return whole_number(request, "limit", default=default, cap=MAX_LIMIT)


def boolean(request, name: str) -> bool:
    raw = request.query_params.get(name, "").strip().lower()
    if raw in TRUE:
        return True
    if raw in FALSE:
        return False
    raise InvalidRequest(f"{name} must be true or false, not {raw!r}")


def choice(request, name: str, choices: tuple[str, ...]) -> str:
    """One of `choices`; absent or empty is the first."""
    value = request.query_params.get(name) or choices[0]
    if value not in choices:
        raise InvalidRequest(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def moment(request, name: str, *, required: bool = False) -> datetime | None:
    """An ISO 8601 date or date-time; a date is its midnight, a naive time is UTC."""
    raw = request.query_params.get(name, "").strip()
    if not raw:
        if required:
            raise InvalidRequest(f"{name} is required")
        return None
    try:
        value = parse_datetime(raw)
        day = None if value else parse_date(raw)
    except ValueError:  # well formed, out of range (month 13)
        value = day = None
    if day is not None:
        value = datetime.combine(day, time.min)
    if value is None:
        raise InvalidRequest(f"{name}: not an ISO 8601 date or time: {raw!r}")
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def after(request, *, parts: int) -> tuple[int, ...] | None:
    """`?after=12.345`, the `next` key of a keyset page: `parts` integers joined by '.'."""
    raw = request.query_params.get("after", "").strip()
    if not raw:
        return None
    try:
        key = tuple(int(v) for v in raw.split("."))
    except ValueError:
        key = ()
    if len(key) != parts or any(abs(v) > MAX_INT for v in key):
        raise InvalidRequest(f"after must be {parts} integer(s) joined by '.', the next key of a page")
    return key


def form(request, *, lists: tuple[str, ...] = ()) -> dict[str, object]:
    """The query as a request body for a serializer to validate: `lists` keep every value."""
    data: dict[str, object] = request.query_params.dict()
    for name in lists:
        data[name] = request.query_params.getlist(name)
    return data


def registry(request, *, required: bool = False) -> Registry | None:
    """`?registry=` by id, name, base URL or host:port; an unknown one is a 404."""
    value = text(request, "registry")
    if value is None:
        if required:
            raise InvalidRequest("registry is required")
        return None
    return registry_lookup(value)


def scope_from_request(request) -> Scope:
    """The scope parameters (`SCOPE_PARAMETERS`); unknown registries and repositories are a 404."""
    labels = {}
    for item in request.query_params.getlist("label"):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidRequest(f"label must be key=value, not {item!r}")
        labels[key] = value
    return scope_resolve(
        registry=text(request, "registry"),
        namespace=text(request, "namespace"),
        repository=text(request, "repository"),
        include_untagged=boolean(request, "include_untagged"),
        tag_glob=text(request, "tag_glob"),
        labels=labels,
        platform=text(request, "platform"),
        last_seen_before=moment(request, "last_seen_before"),
        last_seen_after=moment(request, "last_seen_after"),
    )


# --- the schema -------------------------------------------------------------------------------------------

PAGE_DESCRIPTION = "1-based page number; 0, a negative number or a non-number is a 400."
PAGE_SIZE_DESCRIPTION = (
    f"Rows per page, default {DEFAULT_PAGE_SIZE}; a larger value than {MAX_PAGE_SIZE} is capped at "
    f"{MAX_PAGE_SIZE}; 0, a negative number or a non-number is a 400."
)
AFTER_DESCRIPTION = "The key in the previous page's `next` link; a malformed key is a 400."

PAGE = OpenApiParameter("page", OpenApiTypes.INT, required=False, description=PAGE_DESCRIPTION)
PAGE_SIZE = OpenApiParameter("page_size", OpenApiTypes.INT, required=False, description=PAGE_SIZE_DESCRIPTION)
AFTER = OpenApiParameter("after", OpenApiTypes.STR, required=False, description=AFTER_DESCRIPTION)
PAGE_PARAMETERS = [PAGE, PAGE_SIZE]
KEYSET_PARAMETERS = [AFTER, PAGE_SIZE]
UNTAGGED = OpenApiParameter(
    "include_untagged", OpenApiTypes.BOOL, required=False, description="Also manifests no tag reaches."
)

SCOPE_PARAMETERS = [
    OpenApiParameter(
        "registry",
        OpenApiTypes.STR,
        description="Registry by id, name, base URL or host:port.",
        required=False,
    ),
    OpenApiParameter(
        "namespace",
        OpenApiTypes.STR,
        description="Repository path prefix, e.g. `team` (matches team/*).",
        required=False,
    ),
    OpenApiParameter(
        "repository", OpenApiTypes.STR, description="Repository name, e.g. `team/app`.", required=False
    ),
    OpenApiParameter(
        "include_untagged",
        OpenApiTypes.BOOL,
        required=False,
        description="Count manifests no current tag reaches (default false: tagged images only).",
    ),
    OpenApiParameter(
        "tag_glob", OpenApiTypes.STR, required=False, description="Tag glob (`v1.*`, `release-?`, `[0-9]*`)."
    ),
    OpenApiParameter(
        "label",
        OpenApiTypes.STR,
        required=False,
        many=True,
        description="Config label `key=value`; repeat for several (all must match).",
    ),
    OpenApiParameter(
        "platform", OpenApiTypes.STR, required=False, description="`os/architecture[/variant]`."
    ),
    OpenApiParameter(
        "last_seen_before", OpenApiTypes.DATETIME, required=False, description="Held, last seen before."
    ),
    OpenApiParameter(
        "last_seen_after", OpenApiTypes.DATETIME, required=False, description="Held, last seen at or after."
    ),
]
