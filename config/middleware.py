"""The bounds every request meets, whichever view answers it (API, pages, admin): a body no larger than
DATA_UPLOAD_MAX_MEMORY_SIZE (413, before anything reads it: DRF's parsers read the stream without
Django's check), and no NUL byte in the path, a query parameter or a cookie and no query parameter
longer than MAX_PARAMETER_CHARS (400: PostgreSQL text cannot hold a NUL, and no name, digest or glob is
that long); and a statement the web statement timeout cancelled is answered 503, not 500 (the API's own
views answer it in `analytics.api.errors`). The API answers `{"detail": ...}`, everything else plain
text. A costly answer's place (`analytics.infra.inflight`) is given back here once the answer is
complete, a streamed one when its download ends."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import TooManyFieldsSent
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse

from analytics.infra import inflight, rates
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
        response = self.get_response(request)
        inflight.release_after(request, response)  # a costly answer's place, once it is complete
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if is_statement_timeout(exception):
            return _reply(request, 503, timeout_detail(settings.WEB_STATEMENT_TIMEOUT_SECONDS))
        return None


class LoginRate:
    """The login forms (the admin's, the pages') at most `login` rate per client address, GET and POST
    alike, answered before a session is read or a template rendered: a guesser, locked out or not,
    costs a counter increment per attempt, not a page. django-axes still counts the failures."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.paths: tuple[str, ...] | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.paths is None:
            self.paths = (reverse("admin:login"), reverse("web:login"))
        if request.path in self.paths:
            wait = rates.hit(rates.LOGIN, request)
            if wait is not None:
                response = HttpResponse(
                    f"too many login attempts from this address; try again in {wait} s\n",
                    status=429,
                    content_type="text/plain; charset=utf-8",
                )
                response["Retry-After"] = str(wait)
                return response
        return self.get_response(request)
