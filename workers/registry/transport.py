"""Transport rules shared by every request: retries, `Retry-After`, rate limits, redirects, redaction.

- Retries (go-containerregistry `transport/retry.go`, containers/image `docker_client.go`): 408, 429,
  5xx except 501, connections refused or reset and timeouts are tried again (but a reply cut for
  being too slow, below), at most `RetryPolicy.retries` times, after an exponential backoff with
  jitter, or after `Retry-After` (RFC 9110 10.2.3: seconds or an HTTP date) when the server sends one,
  as long as that is within `max_wait`. A longer `Retry-After` is not waited for: the error goes up
  (transient) and the Celery task retries later. Every request the client sends is a GET or HEAD
  (RFC 9110 9.2.2: idempotent), so sending one again after a timeout cannot change anything on the
  registry.
- Slow replies: with `total_timeout` each attempt ends that many seconds after it started
  (`policy.DEADLINE`); with a `TransferMeter` factory (`min_rate`) each hop's reply must bring at
  least `min_bytes` in every `window` seconds once its first bytes are in (`policy.METER`). Either
  cut raises `policy.SlowTransfer`, which is not retried here: a reply dripped on purpose would hold
  the worker as long again on every try.
- Politeness shared with other processes: an optional `RequestGate` admits each attempt (a
  concurrency slot and a rate token for the registry, held until the reply is closed). The caller
  supplies it (e.g. backed by Redis); this package only calls it. A gate that limits concurrency
  only may admit a batch at once (`BatchGate.admit_many`): the client then holds that many slots for
  the batch's requests, sent by as many threads (`Session.admitted`), instead of two round trips to
  the gate per request; a thread holding a batch's slot keeps it through a backoff sleep.
- Each hop goes straight to the client's transport (`httpx.BaseTransport.handle_request`), not
  through `httpx.Client.send`: no cookie jar (registries do not use cookies), no redirect
  bookkeeping (redirects are followed here); the client's default headers, timeouts and event hooks
  applied as `Client.build_request` and `send` apply them.
- Observation: an optional `observer` is called once per attempt with a `RequestEvent` (route,
  status or error, seconds to the response headers), for metrics kept elsewhere.
- Docker Hub's `RateLimit-Limit` / `RateLimit-Remaining` (`100;w=21600`) are recorded as a
  `RateLimit`; with nothing remaining the next request waits (`RateLimit-Reset` or `max_wait`).
- Redirects are followed by the client hop by hop (`MAX_REDIRECTS`), never from https to http;
  `Authorization` is only sent to the registry's own origin (as Go's net/http does for redirects to
  another host). Presigned storage URLs carry credentials in the query (`X-Amz-Signature`,
  `sig=`...), so `redact_url` drops the query from anything logged or put in an error message.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx

from .auth import Authenticator, AuthRound
from .errors import HTTPStatusError, PolicyError, ProtocolError, error_detail
from .policy import DEADLINE, METER, NetworkPolicy, SlowTransfer, TransferMeter

log = logging.getLogger(__name__)
# Failures with no reply that may pass: refused or reset connections, timeouts (connect, read, pool).
_RETRY_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_ERROR_DETAIL_BYTES = 64 * 1024

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 507, 509, 520, 521, 522, 523, 524, 598, 599})


def origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in (RFC 6454 origin)."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def redact_url(url: httpx.URL | str) -> str:
    """`url` without userinfo and with the query replaced by `?<redacted>` (it may hold a signature)."""
    u = httpx.URL(str(url))
    shown = f"{u.scheme}://{u.host}" + (f":{u.port}" if u.port else "") + u.path
    return shown + ("?<redacted>" if u.query else "")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value: delay-seconds or an HTTP-date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RateLimit:
    """Docker Hub's rate-limit headers as last seen: `limit` and `remaining` requests per `window` s."""

    limit: int | None
    remaining: int | None
    window: int | None = None
    reset: float | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimit | None:
        """The headers' figures, or None when the response has no `RateLimit-*` header."""

        def number(name: str) -> tuple[int | None, int | None]:
            raw = headers.get(name)
            if not raw:
                return None, None
            head, _, rest = raw.partition(";")
            window = rest.strip().removeprefix("w=")
            try:
                return int(head.strip()), (int(window) if window.isdigit() else None)
            except ValueError:
                return None, None

        limit, window = number("RateLimit-Limit")
        remaining, window2 = number("RateLimit-Remaining")
        if limit is None and remaining is None:
            return None
        reset = parse_retry_after(headers.get("RateLimit-Reset"))
        return cls(limit=limit, remaining=remaining, window=window or window2, reset=reset)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry. `sleep` and `rng` are injectable so tests need not wait."""

    retries: int = 3
    base_delay: float = 0.5
    max_delay: float = 10.0
    max_wait: float = 60.0  # the longest Retry-After (or rate-limit wait) honoured inside the client
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter" (half fixed, half random) for retry `attempt` (0-based)."""
        ceiling = float(min(self.max_delay, self.base_delay * (2**attempt)))
        return ceiling / 2 + float(self.rng()) * ceiling / 2

    def delay_for(self, resp: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before retrying `resp`, or None when it must not be retried."""
        if resp.status_code not in RETRY_STATUSES or attempt >= self.retries:
            return None
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if retry_after is not None:
            return retry_after if retry_after <= self.max_wait else None
        return self.backoff(attempt)


class RequestGate(Protocol):
    """Admission for one request to the registry, shared by every client that talks to it.

    `admit()` returns a context manager held while the request is in flight (from sending it to
    closing the reply): an implementation waits there for a free concurrency slot and a rate token.
    It may raise a `RegistryError` (e.g. a transient `TransportError` after waiting too long).
    """

    def admit(self) -> AbstractContextManager[object]:
        """Wait until this request may be sent; the returned context is exited when it is done."""
        ...


class BatchAdmission(Protocol):
    """Slots held for a batch of requests: `count` of them may be in flight at once until the batch
    ends. `renew()` is called before each request of the batch, so that slots held longer than the
    gate lets a slot live are kept (a no-op until then)."""

    count: int

    def renew(self) -> None:
        """Keep the batch's slots from expiring while it runs."""
        ...


class BatchGate(RequestGate, Protocol):
    """A `RequestGate` that can admit several requests in one step (optional: looked up by name)."""

    def admit_many(self, n: int) -> AbstractContextManager[BatchAdmission | None]:
        """Wait until at least one of `n` requests may be sent; the context yields how many may be in
        flight at once (1 to `n`) until it exits, or None when every request must still be admitted
        on its own (a gate with a request rate)."""
        ...


@dataclass(frozen=True, slots=True)
class RequestEvent:
    """One attempt at one request, as an observer sees it.

    `route` is what was asked for: "base", "catalog", "tags", "manifest", "blob", "token" or "other".
    `status` is the reply's status, None when there was none; `error` is then the httpx exception's
    class name (e.g. "ConnectError", "ReadTimeout"). `seconds` runs to the reply's headers.
    """

    registry: str
    method: str
    route: str
    status: int | None
    error: str | None
    seconds: float


Observer = Callable[[RequestEvent], None]


def route_of(url: httpx.URL) -> str:
    """The kind of endpoint `url` names (distribution-spec endpoint table), for metrics labels."""
    path = url.path
    if path in ("/v2/", "/v2"):
        return "base"
    if path.endswith("/_catalog"):
        return "catalog"
    if path.endswith("/tags/list"):
        return "tags"
    if "/manifests/" in path:
        return "manifest"
    if "/blobs/" in path:
        return "blob"
    return "other"


class Session:
    """Sends one logical request: policy check, auth, redirects hop by hop, retries, rate limits.

    `open` yields the final response with its body unread, for the caller to read with its own limits.
    Raises `PolicyError` and `UnauthorizedError` (located with `where`); httpx errors propagate for the
    caller to map.
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        base_url: str,
        policy: NetworkPolicy,
        auth: Authenticator,
        retry: RetryPolicy,
        gate: RequestGate | None = None,
        observer: Observer | None = None,
        min_rate: tuple[int, float] | None = None,
    ) -> None:
        """`min_rate` is (bytes, seconds): the fewest bytes a reply may bring in each window of that
        many seconds once its first bytes are in (`policy.TransferMeter`); None judges no rate."""
        self.http = http
        # Each hop is sent to the client's own transport, with the client's default headers (raw
        # case, later ones override by name) and timeouts, as `Client.build_request` would.
        self.transport: httpx.BaseTransport = http._transport
        self._default_headers = {
            k.decode("latin-1").lower(): (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in http.headers.raw
        }
        self._extensions = {"timeout": http.timeout.as_dict()}
        self._standing = threading.local()  # this thread's requests are admitted already (a batch)
        self.min_rate = min_rate if min_rate and min_rate[0] > 0 and min_rate[1] > 0 else None
        self.base = httpx.URL(base_url)
        # a path is appended to this and parsed once; `URL.join` parses twice around a urljoin
        self._origin_text = str(self.base).rstrip("/") if not self.base.path.strip("/") else None
        self.policy = policy
        self.auth = auth
        self.retry = retry
        self.gate = gate
        self.observer = observer
        self.rate_limit: RateLimit | None = None

    @contextmanager
    def admitted(self) -> Iterator[None]:
        """This thread's requests skip the gate while the block runs: the caller holds a slot for
        them (`BatchGate.admit_many`) and sends them one at a time from this thread."""
        self._standing.held = True
        try:
            yield
        finally:
            self._standing.held = False

    def _target(self, url: str | httpx.URL) -> httpx.URL:
        """`url` resolved against the registry's base URL (what `self.base.join(url)` gives)."""
        if self._origin_text is not None and isinstance(url, str) and url[:1] == "/" and url[1:2] != "/":
            return httpx.URL(self._origin_text + url)
        return self.base.join(url)

    def check_url(self, url: httpx.URL) -> None:
        """The SSRF policy's URL check, with a redacted URL in the message."""
        try:
            self.policy.check_url(url)
        except PolicyError as exc:
            raise PolicyError(f"{redact_url(url)}: {exc.message}") from None

    @contextmanager
    def open(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        headers: dict[str, str] | None,
        follow_redirects: bool,
        scopes: tuple[str, ...],
        where: dict[str, Any],
        total_timeout: float | None = None,
    ) -> Iterator[httpx.Response]:
        """The final response to `method url` (see the class docstring); closed on exit.

        With `total_timeout`, each attempt (its token request, redirects, headers and the body read
        inside the `with`) stops that many seconds after it started (`policy.DEADLINE`)."""
        token = DEADLINE.set(None)
        meter_token = METER.set(None)
        try:
            with ExitStack() as admitted:  # the gate's slot for the final attempt, released after the body
                try:
                    resp = self._send(
                        method,
                        self._target(url),
                        headers or {},
                        follow_redirects,
                        scopes,
                        where,
                        admitted,
                        total_timeout,
                    )
                except (PolicyError, HTTPStatusError, ProtocolError) as exc:  # policy, auth, token server
                    raise exc.locate(**where) from None
                try:
                    yield resp
                finally:
                    resp.close()
        finally:
            METER.reset(meter_token)
            DEADLINE.reset(token)

    def _observe(self, method: str, url: httpx.URL, status: int | None, error: str | None, t0: float) -> None:
        if self.observer is None:
            return
        event = RequestEvent(
            registry=str(self.base),
            method=method,
            route=route_of(url),
            status=status,
            error=error,
            seconds=time.monotonic() - t0,
        )
        try:
            self.observer(event)
        except Exception:  # metrics must never fail a scan
            log.exception("request observer failed")

    def _wait_for_rate_limit(self) -> None:
        limit = self.rate_limit
        if limit is None or limit.remaining != 0:
            return
        wait = min(limit.reset if limit.reset is not None else self.retry.max_wait, self.retry.max_wait)
        log.warning(
            "%s: rate limit exhausted (%s per %ss); waiting %.0fs", self.base, limit.limit, limit.window, wait
        )
        self.retry.sleep(wait)
        self.rate_limit = None  # the next reply says where we stand

    def _send(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        follow_redirects: bool,
        scopes: tuple[str, ...],
        where: dict[str, Any],
        admitted: ExitStack,
        total_timeout: float | None = None,
    ) -> httpx.Response:
        attempt = 0
        state = AuthRound()
        repository = where.get("repository")
        while True:
            self._wait_for_rate_limit()
            if total_timeout is not None:
                DEADLINE.set(time.monotonic() + total_timeout)
            METER.set(None)  # a token request's reply is not this request's: `_follow` sets one per hop
            sent = self.auth.header(scopes, repository)
            slot = ExitStack()  # held from sending to closing the reply; never during a backoff sleep
            if self.gate is not None and not getattr(self._standing, "held", False):
                slot.enter_context(self.gate.admit())
            t0 = time.monotonic()
            try:
                resp = self._follow(method, url, headers, sent, follow_redirects)
            except SlowTransfer as exc:  # too slow on purpose, or nearly: not tried again
                slot.close()
                self._observe(method, url, None, type(exc).__name__, t0)
                raise
            except _RETRY_ERRORS as exc:
                slot.close()
                self._observe(method, url, None, type(exc).__name__, t0)
                if attempt >= self.retry.retries:
                    raise
                pause = self.retry.backoff(attempt)
                log.info("%s: %s (%s); retrying in %.1fs", redact_url(url), type(exc).__name__, exc, pause)
                attempt += 1
                self.retry.sleep(pause)
                continue
            except BaseException:
                slot.close()
                raise
            self._observe(method, url, resp.status_code, None, t0)
            limit = RateLimit.from_headers(resp.headers)
            if limit is not None:
                self.rate_limit = limit
            if resp.status_code == 401 and origin(resp.request.url) == origin(self.base):
                body = resp.read()[:_ERROR_DETAIL_BYTES] if method != "HEAD" else b""
                resp.close()
                slot.close()
                METER.set(None)
                self.auth.on_unauthorized(
                    resp,
                    sent=resp.request.headers.get("Authorization"),
                    scopes=scopes,
                    state=state,
                    repository=repository,
                    error=error_detail(body),
                )
                continue
            delay = self.retry.delay_for(resp, attempt)
            if delay is None:
                admitted.enter_context(slot)
                return resp
            resp.close()
            slot.close()
            log.info("%s: HTTP %d; retrying in %.1fs", redact_url(resp.request.url), resp.status_code, delay)
            attempt += 1
            self.retry.sleep(delay)

    def _request(self, method: str, url: httpx.URL, headers: dict[str, str]) -> httpx.Request:
        """The request `Client.build_request` would build: the client's default headers, these over
        them, its timeouts (no cookies: none are kept)."""
        merged = dict(self._default_headers)
        for name, value in headers.items():
            merged[name.lower()] = (name, value)
        return httpx.Request(method, url, headers=list(merged.values()), extensions=self._extensions)

    def _follow(
        self,
        method: str,
        url: httpx.URL,
        headers: dict[str, str],
        authorization: str | None,
        follow_redirects: bool,
    ) -> httpx.Response:
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            own = origin(current) == origin(self.base)
            hop_headers = dict(headers)
            # Credentials go to the registry's own origin only (a redirect to storage gets none).
            if authorization and own:
                hop_headers["Authorization"] = authorization
            try:
                self.check_url(current)
                request = self._request(method, current, hop_headers)
                hooks = self.http.event_hooks  # the client's hooks are called, as `send` calls them
                for hook in hooks["request"]:
                    hook(request)
                METER.set(TransferMeter(*self.min_rate) if self.min_rate else None)  # each reply its own
                try:
                    resp = self.transport.handle_request(request)
                except httpx.RequestError as exc:
                    exc.request = request  # as `httpx.Client.send` names it
                    raise
                resp.request = request
                for hook in hooks["response"]:
                    hook(resp)
            except PolicyError as exc:
                # The registry's own address refused: so would every other request be.
                raise (exc.widen() if own else exc) from None
            except (httpx.RemoteProtocolError, UnicodeError) as exc:
                # httpx reads `Location` even when not following it: an unparseable one (or a bad IDNA
                # host) is the registry's fault, not a dropped connection to retry.
                if isinstance(exc, httpx.RemoteProtocolError) and "location header" not in str(exc):
                    raise
                raise PolicyError(f"redirect to an invalid URL from {redact_url(current)}: {exc}") from None
            location = resp.headers.get("Location") if resp.status_code in REDIRECT_STATUSES else None
            if not location:
                return resp
            try:
                target = current.join(location)
            except (httpx.InvalidURL, ValueError) as exc:  # IDNA errors are ValueErrors
                # refused even when not followed, as `httpx.Client.send` refuses it
                resp.close()
                raise PolicyError(f"redirect to an invalid URL from {redact_url(current)}: {exc}") from None
            if not follow_redirects:
                return resp
            resp.close()
            if current.scheme == "https" and target.scheme != "https":
                raise PolicyError(
                    f"redirect from {redact_url(current)} to {redact_url(target)} leaves HTTPS; refused"
                )
            log.debug("redirect %d: %s -> %s", resp.status_code, redact_url(current), redact_url(target))
            if resp.status_code == 303 and method != "HEAD":
                method = "GET"
            current = target
        raise PolicyError(f"more than {MAX_REDIRECTS} redirects from {redact_url(url)}")
