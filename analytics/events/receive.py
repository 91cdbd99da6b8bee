"""The events receiver's rules, whichever entry point serves the request (`analytics.api.events`: the
DRF view, and the plain WSGI entry in front of Django that serves it in production), answered as a
status, a JSON body and headers:

1. The secret (`Authorization: Bearer <secret>`, or the password of Basic credentials), compared in
   constant time with the registry's; none, a wrong one, a registry without one or no such registry is
   a 401 (429 past the refusal rate per address), nothing stored.
2. The body at most `EVENTS_MAX_BODY_BYTES` (413), read only then.
3. The formats (`formats.events_parse`): malformed, unknown, invalid is a 400, nothing stored.
4. The inbox: stored in one statement, 202 `{received, stored, duplicates, ignored}` once committed.

What it costs per request: one statement. A registry's name and stored secret read on an earlier
request are kept in this process (`_followers`) and the secret is checked against them; the INSERT then
checks in the same statement that the row still holds them (`inbox.events_store_followed`), and when it
does not (the secret changed, the registry was renamed or deleted) nothing is stored and the row is read
again. A refusal is only ever given from the row as it is now. Django's connection health check (a
`SELECT 1` before the first statement of every request) is skipped: a connection that died while idle
fails that first statement before anything is stored, and the statement is run once more on a new
connection. Any other database error is a 503, nothing half stored (every write is one statement).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection

from analytics.events.formats import EventFormatError, events_parse
from analytics.events.inbox import (
    Follower,
    events_follower,
    events_refused,
    events_store_followed,
    follower_secret_matches,
)
from analytics.infra import rates
from analytics.infra.statements import is_statement_timeout, timeout_detail

logger = logging.getLogger(__name__)

T = TypeVar("T")
CHALLENGE = 'Bearer realm="layerlens registry events"'
# Followers read on earlier requests, by registry id: a few registries send to one deployment.
_followers: dict[int, Follower] = {}
_FOLLOWERS_KEPT = 1024


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()


class _Caller:
    """What `rates.hit` reads of a request: its META (the address), no user."""

    user = None

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.META = meta


def given_secret(authorization: str) -> str:
    """The secret in an `Authorization` header: a bearer token, or the password of Basic credentials."""
    scheme, _, value = authorization.partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[2]
    return ""


def events_receive(*, registry_id: int, meta: Mapping[str, Any], read_body: Callable[[], bytes]) -> Answer:
    """Answer one request to `POST /api/v1/registries/{registry_id}/events/`. `meta` is the WSGI
    environ (Django's `request.META`): `HTTP_AUTHORIZATION`, `CONTENT_LENGTH`, `CONTENT_TYPE` and the
    caller's address; `read_body` returns the body, called only once the secret and length pass."""
    try:
        return _receive(registry_id, meta, read_body)
    except DatabaseError as exc:
        if is_statement_timeout(exc):
            return Answer(503, {"detail": timeout_detail(settings.WEB_STATEMENT_TIMEOUT_SECONDS)})
        logger.warning("events of registry %s: the database failed (%s); answered 503", registry_id, exc)
        detail = "the database did not answer; nothing was stored, send the events again"
        return Answer(503, {"detail": detail})


def _receive(registry_id: int, meta: Mapping[str, Any], read_body: Callable[[], bytes]) -> Answer:
    given = given_secret(meta.get("HTTP_AUTHORIZATION", ""))
    if not connection.in_atomic_block:
        # the first statement is the check (module doc); inside a transaction there is nothing to skip
        connection.health_check_done = True
    follower = _followers.get(registry_id)
    if follower is None or not follower_secret_matches(follower, given):
        follower, name = _follower_now(registry_id, given)
        if follower is None:
            return _unauthorized(name, meta)
    cap = settings.EVENTS_MAX_BODY_BYTES
    length = meta.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > cap:
        detail = f"the body is over {cap:,} bytes (EVENTS_MAX_BODY_BYTES)"
        return _refused(registry_id, given, meta, 413, detail, reason="too_large")
    try:
        parsed = events_parse(body=read_body(), content_type=meta.get("CONTENT_TYPE", ""))
    except EventFormatError as exc:
        return _refused(registry_id, given, meta, 400, str(exc), reason=exc.reason)
    stored = _database(lambda: events_store_followed(follower=follower, events=parsed.events))
    if stored is None:  # the registry's row changed since `follower` was read: read it again
        follower, name = _follower_now(registry_id, given)
        if follower is None:
            return _unauthorized(name, meta)
        stored = _database(lambda: events_store_followed(follower=follower, events=parsed.events))
        if stored is None:  # changed again within a moment; the sender sends again
            detail = "the registry changed while its events were stored; send them again"
            return Answer(503, {"detail": detail})
    body = {"received": stored.received, "stored": stored.stored, "duplicates": stored.duplicates}
    return Answer(202, {**body, "ignored": parsed.ignored})


def _follower_now(registry_id: int, given: str) -> tuple[Follower | None, str]:
    """The registry as its row is now, and its name ("" when there is none): the follower, kept for the
    next requests, when `given` is its secret; None when it is not, or it has no secret."""
    row = _database(lambda: events_follower(registry_id=registry_id))
    if row is None or not follower_secret_matches(row, given):
        _followers.pop(registry_id, None)
        return None, row.name if row is not None else ""
    if len(_followers) >= _FOLLOWERS_KEPT:
        _followers.clear()
    _followers[registry_id] = row
    return row, row.name


def _refused(
    registry_id: int, given: str, meta: Mapping[str, Any], status: int, detail: str, *, reason: str
) -> Answer:
    """A refusal after the secret passed: given only if the row, read now, still says the secret is
    right (a kept follower may be stale), else the row's answer (401). Refusals are rare; a look-up
    each costs nothing that matters."""
    follower, name = _follower_now(registry_id, given)
    if follower is None:
        return _unauthorized(name, meta)
    events_refused(registry_name=name, reason=reason)
    return Answer(status, {"detail": detail})


def _unauthorized(name: str, meta: Mapping[str, Any]) -> Answer:
    # One answer for an unknown registry, one without a secret and a wrong secret. Only refusals are
    # counted against the address: a registry with its secret costs no counter.
    wait = rates.hit(rates.EVENTS_REFUSED, _Caller(meta))
    if wait is not None:
        events_refused(registry_name=name, reason="throttled")
        detail = "too many refused requests from this address"
        return Answer(429, {"detail": detail}, (("Retry-After", str(wait)),))
    events_refused(registry_name=name, reason="unauthorized")
    detail = "no events secret, or not this registry's"
    return Answer(401, {"detail": detail}, (("WWW-Authenticate", CHALLENGE),))


def _database(work: Callable[[], T]) -> T:
    """`work` (one statement); again once on a new connection if the kept one turns out dead (what
    Django's skipped health check was for). Every statement here is a read or an idempotent write."""
    try:
        return work()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block or connection.is_usable():
            raise  # the statement failed, not the connection
        connection.close()
        return work()
