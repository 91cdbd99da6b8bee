"""The bounds every request meets, whichever view answers it (API, pages, admin): a body no larger than
DATA_UPLOAD_MAX_MEMORY_SIZE (413, before anything reads it: DRF's parsers read the stream without
Django's check), and no NUL byte in the path, a query parameter or a cookie and no query parameter
longer than MAX_PARAMETER_CHARS (400: PostgreSQL text cannot hold a NUL, and no name, digest or glob is
that long); and a statement the web statement timeout cancelled is answered 503, not 500 (the API's own
views answer it in `analytics.api.errors`). The API answers `{"detail": ...}`, everything else plain
text."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse

from analytics.infra.statements import is_statement_timeout, timeout_detail

MAX_PARAMETER_CHARS = 1024


def _reply(request: HttpRequest, status: int, detail: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": detail}, status=status)
    return HttpResponse(detail + "\n", status=status, content_type="text/plain; charset=utf-8")


def _body_length(request: HttpRequest) -> int:
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:  # Django reads such a body as empty
        return 0


def refusal(request: HttpRequest) -> tuple[int, str] | None:
    """Why the request is refused before a view runs, as (status, detail); None when it is not."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and _body_length(request) > limit:
        return 413, (
            f"the request body is {_body_length(request):,} bytes; at most {limit:,} are accepted "
            "(DATA_UPLOAD_MAX_MEMORY_SIZE)"
        )
    if "\x00" in request.path:
        return 400, "the URL path: a NUL byte is not allowed"
    try:
        query = request.GET.lists()
    except TooManyFieldsSent:
        return 400, (
            f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} query parameters "
            "(DATA_UPLOAD_MAX_NUMBER_FIELDS); send a long list in a request body"
        )
    for name, values in query:
        if "\x00" in name or any("\x00" in v for v in values):
            return 400, f"{name!r}: a NUL byte is not allowed"
        if len(name) > MAX_PARAMETER_CHARS or any(len(v) > MAX_PARAMETER_CHARS for v in values):
            return 400, f"{name[:40]!r}: a query parameter is at most {MAX_PARAMETER_CHARS} characters"
    for name, value in request.COOKIES.items():
        if "\x00" in name or "\x00" in value:
            return 400, f"cookie {name!r}: a NUL byte is not allowed"
    return None


class RequestBounds:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = refusal(request)
        if refused is not None:
            return _reply(request, *refused)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_statement_timeout(exception):
            return _reply(request, 503, timeout_detail(settings.WEB_STATEMENT_TIMEOUT_SECONDS))
        return None
