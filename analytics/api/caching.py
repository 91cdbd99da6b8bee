"""Read answers cached under the database snapshot they were read at, so a repeated GET costs a cache
read while nothing has been written, and is never stale after a write.

The key of a response holds PostgreSQL's `pg_current_snapshot()` (xmin, xmax and the transactions in
progress). Any commit anywhere in the cluster changes it for every later request: a transaction running
at the snapshot leaves the list when it commits, one that started after it has an id at or past xmax. So
a response stored under a snapshot is served only to requests that began before the next commit, and
what it holds is at least as new as their start. No writer has to say what it changed.

Not used inside a transaction (a test case's, or an atomic request's): there, the transaction's own
writes do not change the snapshot. Only JSON answers of at most `READ_CACHE_MAX_BYTES` are stored, for
`READ_CACHE_SECONDS`; a CSV download or the browsable API is never cached. A view whose answer depends on
anything but the database and the request (the clock, the caller's rights) must not use it.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse

_PREFIX = "read:v1:"


def _snapshot() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_snapshot()::text")
        return cursor.fetchone()[0]


def _key(request) -> str | None:
    if settings.READ_CACHE_SECONDS <= 0 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return None
    renderer = getattr(request, "accepted_renderer", None)
    if renderer is None or renderer.format != "json":
        return None
    database = settings.DATABASES["default"]
    parts = (
        f"{database.get('HOST')}:{database.get('PORT')}/{database.get('NAME')}",
        request.build_absolute_uri(),
        request.accepted_media_type or "",
        _snapshot(),
    )
    return _PREFIX + hashlib.sha256("\n".join(parts).encode()).hexdigest()


class SnapshotCachedRead:
    """A DRF view mixin: GETs answered from the cache while the database snapshot is unchanged.

    Authentication, permissions, throttles and query checks run first (`initial`), on every request."""

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method != "GET":
            return
        key = _key(request)
        if key is None:
            return
        handler_name = request.method.lower()
        hit = cache.get(key)
        if hit is not None:
            content_type, body = hit
            setattr(self, handler_name, lambda *a, **k: HttpResponse(body, content_type=content_type))
            return
        handler = getattr(self, handler_name)

        def store(*a, **k):
            response = handler(*a, **k)
            if response.status_code == 200 and hasattr(response, "add_post_render_callback"):
                response.add_post_render_callback(lambda r: _store(key, r))
            return response

        setattr(self, handler_name, store)


def _store(key: str, response) -> None:
    if getattr(response, "streaming", False) or len(response.content) > settings.READ_CACHE_MAX_BYTES:
        return
    cache.set(key, (response["Content-Type"], response.content), timeout=settings.READ_CACHE_SECONDS)
