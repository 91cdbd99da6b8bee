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
import threading
import time

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


class _InFlight:
    """One computation per key in this process: when a commit starts a new snapshot, every thread asking
    the same question would miss at once and compute it side by side (a whole page's CPU times the
    connections); the first computes, the others wait for its answer (at most `WAIT_SECONDS`, then compute
    themselves)."""

    WAIT_SECONDS = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: dict[str, tuple[threading.Event, float]] = {}

    def lead(self, key: str) -> threading.Event | None:
        """None: this thread computes `key` (and must `done` it); else the event to wait for. A leader
        that never said `done` (its answer failed to render) is replaced after `WAIT_SECONDS`."""
        now = time.monotonic()
        with self._lock:
            held = self._events.get(key)
            if held is not None and now - held[1] < self.WAIT_SECONDS:
                return held[0]
            self._events[key] = (threading.Event(), now)
        if held is not None:
            held[0].set()
        return None

    def done(self, key: str) -> None:
        with self._lock:
            held = self._events.pop(key, None)
        if held is not None:
            held[0].set()


_in_flight = _InFlight()


def _cached_response(key: str) -> HttpResponse | None:
    hit = cache.get(key)
    if hit is None:
        return None
    content_type, body = hit
    return HttpResponse(body, content_type=content_type)


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
        response = _cached_response(key)
        leads = False  # whether this thread computes the answer for the others waiting on it
        if response is None:
            waiting = _in_flight.lead(key)
            leads = waiting is None
            if waiting is not None and waiting.wait(_InFlight.WAIT_SECONDS):
                response = _cached_response(key)  # none if the answer was not one to keep
        if response is not None:
            self.get = lambda *a, **k: response
            return
        handler = self.get

        def store(*a, **k):
            try:
                answer = handler(*a, **k)
            except BaseException:
                if leads:
                    _in_flight.done(key)
                raise
            if answer.status_code == 200 and hasattr(answer, "add_post_render_callback"):
                answer.add_post_render_callback(lambda r: _store(key, r, leads))
            elif leads:
                _in_flight.done(key)
            return answer

        self.get = store


def _store(key: str, response, leads: bool) -> None:
    try:
        if getattr(response, "streaming", False) or len(response.content) > settings.READ_CACHE_MAX_BYTES:
            return
        cache.set(key, (response["Content-Type"], response.content), timeout=settings.READ_CACHE_SECONDS)
    finally:
        if leads:
            _in_flight.done(key)
