"""A read-only client for the registry HTTP API v2 (distribution-spec "Pull" and "Content discovery").

Usage::

    with RegistryClient("http://127.0.0.1:5000", username="u", password="p") as client:
        client.ping()
        for name in client.iter_repositories():
            snapshot = snapshot_repository(client, name)  # the crawl, in `snapshot`

One `httpx.Client` per instance (connection pooling, limits, timeouts). Configuration comes only from
the constructor; `transport` takes an `httpx.MockTransport` in tests. This module owns the client's
making (configuration, pool, session), its life (threads, `map_requests`, `close`) and `ping`; the
operations come from its bases: `listing.Listing` (catalog, tags) and `content.Content` (manifests,
blobs, configs), both on `exchange.Exchange` (one request and its reply, size-capped, errors mapped).

Authentication (`auth`): basic and the token (Bearer) flow, tokens cached per registry, realm, service,
scopes and credential. Transport (`transport.Session`): redirects followed hop by hop, retries with
backoff, `Retry-After` and rate limits. Every URL and every address connected to passes the SSRF
policy (`policy`): internal addresses only when the constructor allows them.
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

import httpx

from .auth import Authenticator, Credentials, TokenCache
from .content import Content
from .errors import PolicyError, ReferenceError, RegistryError, stops_snapshot
from .exchange import _ERROR_BODY_BYTES
from .image_config import ParsedConfig
from .listing import Listing
from .policy import GuardedTransport, NetworkPolicy, parse_networks
from .reference import is_loopback_host, parse_scan_target
from .transport import BatchAdmission, Observer, RateLimit, RequestGate, RetryPolicy, Session

MAX_PAGE_SIZE = 1000  # distribution's default `catalog.maxentries`; it answers 400 above its limit
# Tags one repository may list: far above real repositories (CI-heavy ones hold a few thousand), far
# below what an endless `Link` chain would make us read, hold and ingest in one transaction.
MAX_TAGS = 100_000
# The slowest a reply may come once its first bytes are in: 1 KiB in each 10 s window (curl's
# --speed-limit / --speed-time). A 4 MiB manifest at that rate takes over 11 hours; real registries
# send it in well under a second. A drip (a few bytes a second) is cut at the window's end.
MIN_TRANSFER_BYTES = 1024
MIN_TRANSFER_WINDOW = 10.0

_T = TypeVar("_T")
_R = TypeVar("_R")


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    """The default verifying context, built once: loading the CA bundle costs ~20 ms per client."""
    return httpx.create_ssl_context()


class RegistryClient(Listing, Content):
    """A registry HTTP API v2 client for one registry; a context manager that closes its pool."""

    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        verify: bool | str | ssl.SSLContext = True,
        timeout: float = 30.0,
        page_size: int = 100,
        transport: httpx.BaseTransport | None = None,
        max_connections: int = 16,
        user_agent: str = "layerlens/1.0",
        config_cache_size: int = 4096,
        identity_token: str | None = None,
        allow_internal: bool = False,
        allowed_networks: Iterable[str] | str | None = None,
        retries: int = 3,
        retry_base_delay: float = 0.5,
        max_retry_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        token_cache: TokenCache | None = None,
        gate: RequestGate | None = None,
        observer: Observer | None = None,
        max_concurrency: int = 8,
        allow_plain_http: bool = False,
        total_timeout: float = 300.0,
        max_tags: int | None = None,
        min_transfer_bytes: int = MIN_TRANSFER_BYTES,
        min_transfer_window: float = MIN_TRANSFER_WINDOW,
    ) -> None:
        """Open a client for `base_url` (`http(s)://host[:port]`; a bare `host:port` is accepted too).

        `verify` is True, False, a path to a CA bundle, or an `ssl.SSLContext` (e.g. built from PEM
        data). `page_size` is capped at 1000. `identity_token` is an OAuth2 refresh token (docker's
        `identitytoken`) used instead of a password. `allow_internal` lets the client reach internal
        addresses (loopback, private, link-local...); `allowed_networks` (CIDRs) allows only those.
        `retries`, `retry_base_delay` and `max_retry_wait` bound the retries (`transport.RetryPolicy`);
        `sleep` is injectable for tests. `gate` admits every request (limits shared with other
        processes, `transport.RequestGate`); `observer` sees every attempt (`transport.RequestEvent`).
        `max_concurrency` bounds the requests `map_requests` has in flight (a thread pool over
        kept-alive connections; 1 reads sequentially). A plain `http://` registry needs
        `allow_plain_http` (a registry marked insecure) unless it is on loopback, as dockerd treats
        127.0.0.0/8; `total_timeout` bounds one response from request to last byte, so a reply that
        trickles in under the read timeout still ends (headers included); and once a reply's first
        bytes are in, each `min_transfer_window` seconds must bring `min_transfer_bytes` (0 turns the
        check off), so a drip ends within a window, not at the total time limit. Either cut raises
        `SlowReplyError`, not retried. `max_tags` (`MAX_TAGS`) bounds one repository's tag list. Raises
        `ReferenceError` for a base URL with a path, query or bad host; a refused address raises
        `PolicyError` at the first request.
        """
        target = parse_scan_target(base_url)
        if target.repository is not None:
            raise ReferenceError(f"registry base URL {base_url!r} must not have a path")
        self.base_url = target.registry_url
        try:
            self.registry = httpx.URL(self.base_url).netloc.decode("ascii")
        except (httpx.InvalidURL, ValueError) as exc:  # IDNA errors are ValueErrors
            raise ReferenceError(f"registry base URL {self.base_url!r} is not a usable URL: {exc}") from None
        if (
            self.base_url.startswith("http://")
            and not allow_plain_http
            and not is_loopback_host(self.registry)
        ):
            raise PolicyError(
                "plain HTTP: credentials and content would travel unprotected; "
                "mark the registry insecure to allow it",
                registry=self.base_url,
            )
        self.total_timeout = float(total_timeout)
        self.max_tags = max_tags or MAX_TAGS
        self.page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
        self._username = username
        ssl_verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        if ssl_verify is True:
            ssl_verify = _default_ssl_context()
        self.policy = NetworkPolicy(
            allow_internal=allow_internal, allowed_networks=parse_networks(allowed_networks)
        )
        self.max_concurrency = max(1, int(max_concurrency))
        max_connections = max(max_connections, self.max_concurrency)
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._http = httpx.Client(
            verify=ssl_verify,
            timeout=httpx.Timeout(timeout),
            limits=limits,
            transport=transport or GuardedTransport(policy=self.policy, verify=ssl_verify, limits=limits),
            headers={"User-Agent": user_agent},
            follow_redirects=False,
            trust_env=False,  # no proxies from the environment: they would resolve names past the policy
        )
        credentials = Credentials(username=username, password=password, identity_token=identity_token)
        self._session = Session(
            self._http,
            base_url=self.base_url,
            policy=self.policy,
            auth=Authenticator(
                self._http,
                registry=self.base_url,
                credentials=credentials,
                check_url=self.policy.check_url,
                cache=token_cache,
            ),
            retry=RetryPolicy(
                retries=retries, base_delay=retry_base_delay, max_wait=max_retry_wait, sleep=sleep
            ),
            gate=gate,
            observer=observer,
            min_rate=(int(min_transfer_bytes), float(min_transfer_window)),
        )
        self._config_cache: OrderedDict[str, ParsedConfig] = OrderedDict()
        self._config_cache_size = config_cache_size
        self._cache_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.closed = False

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker threads and close the connection pool."""
        self.closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._http.close()

    def map_requests(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R | RegistryError]:
        """`fn(item)` for each of `items`, at most `max_concurrency` at a time; results in `items` order.

        For fanning requests out over the kept-alive connections: `fn` runs in the client's thread
        pool (started on first use, stopped by `close`), or in the calling thread when
        `max_concurrency` is 1 or there is one item. A `RegistryError` is returned in place of its
        result; `TransportError` (the registry stopped answering), a registry-wide `PolicyError`
        (`errors.stops_snapshot`) and anything unexpected is raised once the calls already running
        are done, and the ones not started are cancelled.

        With a gate that admits batches (`transport.BatchGate`), several items take their slots in
        one step: as many threads as slots granted run the items one after another, their requests
        admitted already (two round trips to the gate per batch, not per request).
        """

        def call(item: _T) -> _R | RegistryError:
            try:
                return fn(item)
            except RegistryError as exc:
                if stops_snapshot(exc):
                    raise
                return exc

        if len(items) > 1:
            admit_many = getattr(self._session.gate, "admit_many", None)
            if admit_many is not None:
                with admit_many(min(self.max_concurrency, len(items))) as admission:
                    if admission is not None:
                        return self._map_admitted(call, items, admission)
        if self.max_concurrency == 1 or len(items) <= 1:
            return [call(item) for item in items]
        pool = self._threads()
        futures: list[Future[_R | RegistryError]] = [pool.submit(call, item) for item in items]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

    def _threads(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="registry")
            return self._pool

    def _map_admitted(
        self, call: Callable[[_T], _R | RegistryError], items: Sequence[_T], admission: BatchAdmission
    ) -> list[_R | RegistryError]:
        """`map_requests` under slots already held: `admission.count` runners take the items in order,
        each sending one request at a time; an exception stops them all once their current item is
        done, and the first (in `items` order) is raised."""
        results: list[_R | RegistryError | None] = [None] * len(items)
        errors: list[tuple[int, BaseException]] = []
        todo = iter(enumerate(items))
        lock = threading.Lock()

        def runner() -> None:
            with self._session.admitted():
                while True:
                    with lock:
                        nxt = None if errors else next(todo, None)
                    if nxt is None:
                        return
                    i, item = nxt
                    try:
                        admission.renew()
                        results[i] = call(item)
                    except BaseException as exc:
                        with lock:
                            errors.append((i, exc))
                        return

        width = max(1, min(admission.count, self.max_concurrency, len(items)))
        if width == 1:
            runner()
        else:
            futures = [self._threads().submit(runner) for _ in range(width)]
            for f in futures:
                f.result()
        if errors:
            raise min(errors, key=lambda e: e[0])[1]
        return results  # type: ignore[return-value]  # every item ran: no None is left

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RegistryClient({self.base_url!r})"

    @property
    def rate_limit(self) -> RateLimit | None:
        """Docker Hub's `RateLimit-Limit` / `RateLimit-Remaining` as last seen (None if never sent)."""
        return self._session.rate_limit

    # -- API: the base endpoint ---------------------------------------------------------------------

    def ping(self) -> str | None:
        """GET /v2/ (distribution-spec "end-1"): check the registry answers and accepts our credentials.

        Returns the `Docker-Distribution-API-Version` header (e.g. "registry/2.0"), or None. Raises
        `UnauthorizedError` for a 401 (no or wrong credentials, or a token challenge), other
        `HTTPStatusError`s, or `TransportError`.
        """
        resp, body = self._request("/v2/", max_bytes=_ERROR_BODY_BYTES)
        self._raise_for_status(resp, body)
        version: str | None = resp.headers.get("Docker-Distribution-API-Version")
        return version
