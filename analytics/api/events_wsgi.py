"""The events receiver served in front of Django (`config/wsgi.py`): `POST /api/v1/registries/{id}/events/`
answered by `analytics.events.receive` straight from the WSGI environ, with no middleware chain, URL
resolution or DRF dispatch, which cost about two thirds of the receiver's CPU (bench/README.md, "Following
a registry by its events").

Only requests that Django would answer exactly as the receiver's view does are taken: a POST to that
path with a numeric `Content-Length` within `DATA_UPLOAD_MAX_MEMORY_SIZE`, an allowed host, no query
string and no cookie. Anything else (a chunked or oversized body, a query parameter or cookie the
middlewares would check, a host Django refuses) goes to Django, whose bounds (`config.middleware`) and
view answer it. What the middlewares would add to an answer (the security headers) is added here; the
database connection is tidied before and after, as Django's request signals do. An accepted request
(202) gets no access line (config/gunicorn_logger.py); refusals and failures do.
"""

from __future__ import annotations

import http
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db import connection
from django.http.request import split_domain_port, validate_host

from analytics.events.receive import Answer, events_receive
from analytics.infra.logs import ACCESS_UNLOGGED

logger = logging.getLogger(__name__)

# `<int:pk>` takes any digits; more than 18 could overflow the id's bigint: Django answers those
_PATH = re.compile(r"/api/v1/registries/([0-9]{1,18})/events/")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def events_wsgi(django_app: WSGIApp) -> WSGIApp:
    """`django_app` with the events receiver's requests answered in front of it."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        match = _PATH.fullmatch(environ.get("PATH_INFO", ""))
        if match is None or environ.get("REQUEST_METHOD") != "POST" or not _plain(environ):
            return django_app(environ, start_response)
        return _serve(int(match[1]), environ, start_response)

    return application


def _plain(environ: dict[str, Any]) -> bool:
    """Whether Django's middlewares would let the request through to the view unchanged."""
    if environ.get("QUERY_STRING") or environ.get("HTTP_COOKIE"):
        return False
    length = environ.get("CONTENT_LENGTH") or ""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if not length.isdigit() or (limit is not None and int(length) > limit):
        return False
    return _host_allowed(environ)


def _host_allowed(environ: dict[str, Any]) -> bool:
    """`HttpRequest.get_host()`'s check (CommonMiddleware asks it of every request), without building one."""
    if settings.USE_X_FORWARDED_HOST or "HTTP_HOST" not in environ:
        return False  # Django decides
    domain, _ = split_domain_port(environ["HTTP_HOST"])
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def _security_headers() -> list[tuple[str, str]]:
    """What SecurityMiddleware and XFrameOptionsMiddleware add to the view's answer."""
    headers = []
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        value = policy if isinstance(policy, str) else ",".join(policy)
        headers.append(("Referrer-Policy", value))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
    headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
    return headers


def _tidy_connection() -> None:
    # Django's request_started and request_finished: a connection past CONN_MAX_AGE, or left broken or
    # out of autocommit, is closed. Not inside a transaction (a test's): it would end it.
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def _serve(registry_id: int, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    _tidy_connection()
    try:
        length = int(environ["CONTENT_LENGTH"])
        answer = events_receive(
            registry_id=registry_id, meta=environ, read_body=lambda: environ["wsgi.input"].read(length)
        )
    except Exception:
        logger.exception("events of registry %s: the receiver failed", registry_id)
        answer = Answer(500, {"detail": "A server error occurred."})
    finally:
        _tidy_connection()
    body = json.dumps(answer.body, separators=(",", ":")).encode()
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        *_security_headers(),
        *answer.headers,
    ]
    if answer.status == 202:
        environ[ACCESS_UNLOGGED] = True  # stored and counted: the access log leaves it out
    start_response(f"{answer.status} {http.HTTPStatus(answer.status).phrase}", headers)
    return [body]
