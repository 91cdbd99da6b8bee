"""A read-only client for the registry HTTP API v2 (distribution-spec "Pull" and "Content discovery").

Usage::

    with RegistryClient("http://127.0.0.1:5000", username="u", password="p") as client:
        client.ping()
        for name in client.iter_repositories():
            snapshot = snapshot_repository(client, name)  # the crawl, in `snapshot`

One `httpx.Client` per instance (connection pooling, limits, timeouts). Configuration comes only from
the constructor; `transport` takes an `httpx.MockTransport` in tests. Every body read is size-capped
and every manifest and config is checked against its digest before it is parsed.

Authentication (`auth`): basic and the token (Bearer) flow, tokens cached per registry, realm, service,
scopes and credential. Transport (`transport.Session`): redirects followed hop by hop, retries with
backoff, `Retry-After` and rate limits. Every URL and every address connected to passes the SSRF
policy (`policy`): internal addresses only when the constructor allows them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import httpx

from .auth import CATALOG_SCOPE, Authenticator, Credentials, TokenCache, repository_scope
from .errors import (
    DigestMismatchError,
    ForbiddenError,
    HTTPStatusError,
    ManifestError,
    NotFoundError,
    PolicyError,
    ProtocolError,
    ReferenceError,
    RegistryError,
    SlowReplyError,
    TransportError,
    UnauthorizedError,
    error_detail,
    stops_snapshot,
)
from .manifests import (
    ACCEPT,
    ParsedConfig,
    ParsedImageManifest,
    manifest_digest,
    normalize_media_type,
    parse_config,
)
from .policy import GuardedTransport, NetworkPolicy, SlowTransfer, parse_networks
from .reference import (
    is_loopback_host,
    parse_scan_target,
    validate_digest,
    validate_repository,
    validate_tag,
)
from .transport import (
    BatchAdmission,
    Observer,
    RateLimit,
    RequestGate,
    RetryPolicy,
    Session,
    origin,
    parse_retry_after,
    redact_url,
)

MAX_PAGE_SIZE = 1000  # distribution's default `catalog.maxentries`; it answers 400 above its limit
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution-spec: registries SHOULD accept manifests up to 4 MiB
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # as for manifests; real configs are a few KiB (a long history: 100 KiB)
MAX_LIST_PAGE_BYTES = 32 * 1024 * 1024
MAX_PAGES = 100_000
MAX_IDLE_PAGES = 3  # consecutive pages with a `next` link and nothing new: a loop with changing URLs
# Tags one repository may list: far above real repositories (CI-heavy ones hold a few thousand), far
# below what an endless `Link` chain would make us read, hold and ingest in one transaction.
MAX_TAGS = 100_000
# The slowest a reply may come once its first bytes are in: 1 KiB in each 10 s window (curl's
# --speed-limit / --speed-time). A 4 MiB manifest at that rate takes over 11 hours; real registries
# send it in well under a second. A drip (a few bytes a second) is cut at the window's end.
MIN_TRANSFER_BYTES = 1024
MIN_TRANSFER_WINDOW = 10.0
_ERROR_BODY_BYTES = 64 * 1024

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    """Manifest bytes as served, verified: `digest` is the sha256 of `content` (or the digest asked for).

    `media_type` is the `Content-Type` as served, without parameters ("" if none); the parser decides
    the real type from the body.
    """

    content: bytes
    media_type: str
    digest: str

    @property
    def size(self) -> int:
        """Bytes of the manifest as served."""
        return len(self.content)


def compute_digest(content: bytes, algorithm: str = "sha256") -> str:
    """`algorithm:hex` of `content` (sha256 or sha512)."""
    return f"{algorithm}:{hashlib.new(algorithm, content).hexdigest()}"


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    """The default verifying context, built once: loading the CA bundle costs ~20 ms per client."""
    return httpx.create_ssl_context()


class RegistryClient:
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

    # -- transport -------------------------------------------------------------------------------

    def _request(
        self,
        url: str | httpx.URL,
        *,
        max_bytes: int,
        repository: str | None = None,
        reference: str | None = None,
        headers: dict[str, str] | None = None,
        follow_redirects: bool = False,
        method: str = "GET",
    ) -> tuple[httpx.Response, bytes]:
        """GET (or HEAD) `url`, reading at most `max_bytes` of a success body; map httpx failures to ours."""
        where = {"registry": self.base_url, "repository": repository, "reference": reference}
        started = time.monotonic()
        try:
            with self._session.open(
                method,
                url,
                headers=headers,
                follow_redirects=follow_redirects,
                scopes=self._scopes(url, repository),
                where=where,
                total_timeout=self.total_timeout,
            ) as resp:
                limit = max_bytes if resp.status_code < 400 else _ERROR_BODY_BYTES
                declared = resp.headers.get("Content-Length")
                if method == "HEAD":
                    # A HEAD reply has no body (its Content-Length describes the GET's), but until the
                    # empty body is read the connection is not reusable: closed, it costs a TCP connect
                    # per HEAD (an incremental rescan is one HEAD per tag).
                    resp.read()
                    return resp, b""
                if resp.status_code < 400 and declared and declared.isdigit() and int(declared) > limit:
                    raise ProtocolError(
                        f"response of {declared} bytes exceeds the {limit}-byte limit", **where
                    )
                chunks: list[bytes] = []
                total = 0
                deadline = time.monotonic() + self.total_timeout
                for chunk in resp.iter_bytes():
                    if time.monotonic() > deadline:
                        raise SlowReplyError(self._too_slow_total(), **where)
                    total += len(chunk)
                    if total > limit:
                        if resp.status_code >= 400:
                            break  # an error body is only read for its message
                        raise ProtocolError(f"response exceeds the {limit}-byte limit", **where)
                    chunks.append(chunk)
                return resp, b"".join(chunks)[:limit]
        except SlowTransfer as exc:
            if time.monotonic() - started >= self.total_timeout:
                raise SlowReplyError(self._too_slow_total(), **where) from exc
            raise SlowReplyError(f"reply too slow: {exc}", **where) from exc
        except httpx.TimeoutException as exc:
            if time.monotonic() - started >= self.total_timeout:
                raise SlowReplyError(self._too_slow_total(), **where) from exc
            raise TransportError(f"timed out: {type(exc).__name__}", **where) from exc
        except httpx.TooManyRedirects as exc:
            raise ProtocolError(f"too many redirects: {exc}", **where) from exc
        except httpx.DecodingError as exc:
            raise ProtocolError(f"undecodable response body: {exc}", **where) from exc
        except httpx.InvalidURL as exc:
            raise ProtocolError(f"not a usable URL: {exc}", **where) from exc
        except httpx.TransportError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc or 'connection failed'}", **where) from exc

    def _too_slow_total(self) -> str:
        return f"reply too slow: not complete after {self.total_timeout:g}s (total time limit)"

    @property
    def rate_limit(self) -> RateLimit | None:
        """Docker Hub's `RateLimit-Limit` / `RateLimit-Remaining` as last seen (None if never sent)."""
        return self._session.rate_limit

    @staticmethod
    def _scopes(url: str | httpx.URL, repository: str | None) -> tuple[str, ...]:
        """The token scopes a request needs (distribution token.md "Requesting a Token")."""
        if repository:
            return (repository_scope(repository),)
        if httpx.URL(str(url)).path.endswith("/_catalog"):
            return (CATALOG_SCOPE,)
        return ()

    def _raise_for_status(
        self,
        resp: httpx.Response,
        body: bytes,
        *,
        repository: str | None = None,
        reference: str | None = None,
    ) -> None:
        status = resp.status_code
        if 200 <= status < 300:
            return
        where: dict[str, Any] = {"registry": self.base_url, "repository": repository, "reference": reference}
        if status < 400:
            raise ProtocolError(f"unexpected HTTP {status} {resp.reason_phrase}", **where)
        code, detail = error_detail(body)
        text = (
            f"HTTP {status}"
            + (f" {code}" if code else f" {resp.reason_phrase}")
            + (f": {detail}" if detail else "")
        )
        retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        kwargs: dict[str, Any] = {"status": status, "code": code, "retry_after": retry_after, **where}
        if status == 401:
            # The registry's own 401s are decided in `auth.Authenticator`; this one came from
            # elsewhere (a redirect target such as blob storage).
            raise UnauthorizedError(f"{text} from {redact_url(resp.request.url)}", **kwargs)
        if status == 403:
            # Final (distribution-spec DENIED): authenticated, but not allowed; retrying changes nothing.
            target = f"repository {repository!r}" if repository else "this registry"
            raise ForbiddenError(
                f"{text}; access to {target} is denied for "
                + (f"user {self._username!r}" if self._username is not None else "anonymous requests")
                + ": grant the account pull access or save other credentials",
                **kwargs,
            )
        if status == 404:
            raise NotFoundError(text, **kwargs)
        raise HTTPStatusError(text, **kwargs)

    def _get_json(
        self, resp: httpx.Response, body: bytes, *, what: str, repository: str | None
    ) -> dict[str, Any]:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise ProtocolError(f"{what} is not a JSON object", registry=self.base_url, repository=repository)
        return doc

    # -- API: base, catalog, tags ----------------------------------------------------------------

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

    def iter_repositories(self) -> Iterator[str]:
        """Every repository name of `GET /v2/_catalog`, following `Link: <...>; rel="next"` to the end.

        Names come out once each, in the registry's order. Raises `ProtocolError` for a pagination
        loop or a cross-origin `Link`, and the usual HTTP and transport errors.
        """
        return self._paginate("/v2/_catalog", "repositories", repository=None)

    def iter_tags(self, repository: str) -> Iterator[str]:
        """Every tag of `GET /v2/<name>/tags/list` (distribution-spec "Listing Tags"), paginated.

        A `"tags": null` body (a repository with no tags left) is an empty list; duplicates are dropped.
        A list longer than `max_tags` stops with `ProtocolError` once it gets there.
        """
        validate_repository(repository)
        return self._paginate(
            f"/v2/{repository}/tags/list", "tags", repository=repository, max_items=self.max_tags
        )

    def _resolve_link(self, current: httpx.URL, link: str, repository: str | None) -> httpx.URL:
        # RFC 8288 "Link": a relative target resolves against the request URL. Only same-origin
        # targets are followed, so credentials never leave the registry.
        try:
            target = current.join(link)
            target_origin = origin(target)  # httpx decodes an IDNA host only when asked for it
        except (httpx.InvalidURL, ValueError) as exc:  # IDNA errors are ValueErrors
            raise ProtocolError(
                f"invalid Link header {link[:200]!r}: {exc}", registry=self.base_url, repository=repository
            ) from exc
        if target_origin != origin(current):
            raise ProtocolError(
                f"Link rel=next points to another origin "
                f"({target.scheme}://{target.netloc.decode()}); refused",
                registry=self.base_url,
                repository=repository,
            )
        return target

    def _paginate(
        self, path: str, key: str, *, repository: str | None, max_items: int | None = None
    ) -> Iterator[str]:
        """Follow distribution-spec pagination ("Listing Tags"/catalog: `n`, `last`, `Link` rel=next).

        1. Ask for `n` = page size; on 400 PAGINATION_NUMBER_INVALID halve `n` and ask again.
        2. Yield the names not seen yet.
        3. Follow `Link` rel=next while there is one; stop with `ProtocolError` if a URL comes back
           (a loop), if several pages in a row bring nothing new, past `MAX_PAGES`, or past
           `max_items` names.
        """
        page_size = self.page_size
        url = httpx.URL(self.base_url + path, params={"n": page_size})
        fetched: set[str] = set()
        seen: set[str] = set()
        idle = 0
        where: dict[str, Any] = {"registry": self.base_url, "repository": repository}
        while True:
            if str(url) in fetched:
                raise ProtocolError(
                    f"pagination loop: Link rel=next points back at {url.raw_path.decode()}", **where
                )
            if len(fetched) >= MAX_PAGES:
                raise ProtocolError(f"pagination did not end after {MAX_PAGES} pages", **where)
            fetched.add(str(url))
            resp, body = self._request(url, max_bytes=MAX_LIST_PAGE_BYTES, repository=repository)
            if resp.status_code == 400 and page_size > 1 and not seen:
                # distribution answers 400 PAGINATION_NUMBER_INVALID above its maxentries, some others a
                # 400 without an error code: ask for half as many, on our own first URL only (a Link is
                # followed verbatim). A 400 with another code (UNSUPPORTED, NAME_INVALID) is raised.
                code, _ = error_detail(body)
                if code in (None, "PAGINATION_NUMBER_INVALID"):
                    page_size //= 2
                    url = url.copy_set_param("n", page_size)
                    continue
            self._raise_for_status(resp, body, repository=repository)
            doc = self._get_json(resp, body, what=f"{path} reply", repository=repository)
            items = doc.get(key)
            if items is None:
                items = []
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ProtocolError(f"{path} reply: {key!r} is not a list of strings", **where)
            new = 0
            for item in items:
                if item not in seen:
                    if max_items is not None and len(seen) >= max_items:
                        raise ProtocolError(
                            f"{key} list goes on past {max_items:,} entries; refused", **where
                        )
                    seen.add(item)
                    new += 1
                    yield item
            link = resp.links.get("next", {}).get("url")
            if not link:
                return
            idle = 0 if new else idle + 1
            if idle >= MAX_IDLE_PAGES:
                raise ProtocolError(f"pagination loop: {idle} pages in a row brought nothing new", **where)
            url = self._resolve_link(url, link, repository)

    # -- API: manifests and blobs ----------------------------------------------------------------

    def _manifest_target(self, repository: str, reference: str) -> bool:
        """Validate name and reference before they go into a URL; True when `reference` is a digest."""
        validate_repository(repository)
        by_digest = ":" in reference
        if by_digest:
            validate_digest(reference)
        else:
            validate_tag(reference)
        return by_digest

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """GET `/v2/<name>/manifests/<reference>` (distribution-spec "Pulling manifests"), verified.

        `reference` is a tag or a digest. Integrity (distribution-spec "Content Digests"; image-spec
        `descriptor.md` "Digests"): the digest is computed over the bytes served, with the reference's
        algorithm (a signed schema 1 over its payload without signatures). Asked by digest, the body
        must hash to it, and a `Docker-Content-Digest` naming another digest is a mismatch too. Asked
        by tag, the computed digest wins: the distribution-spec lists `Docker-Content-Digest` among the
        "Legacy Docker support HTTP headers" that "are OPTIONAL and clients SHOULD NOT depend on them",
        so a missing or different one is logged, not trusted, and not fatal (containerd and
        go-containerregistry likewise verify only what they asked for by digest). Raises
        `ReferenceError` before any request for a bad name, tag or digest; `DigestMismatchError`;
        `NotFoundError` (MANIFEST_UNKNOWN, NAME_UNKNOWN); and the rest.
        """
        by_digest = self._manifest_target(repository, reference)
        where: dict[str, Any] = {"registry": self.base_url, "repository": repository, "reference": reference}
        resp, body = self._request(
            f"/v2/{repository}/manifests/{reference}",
            max_bytes=MAX_MANIFEST_BYTES,
            repository=repository,
            reference=reference,
            headers={"Accept": ACCEPT},
            follow_redirects=True,
        )
        self._raise_for_status(resp, body, repository=repository, reference=reference)
        header = resp.headers.get("Docker-Content-Digest", "").strip()
        if by_digest:
            algorithm = reference.split(":", 1)[0]
            actual = self._digest_of(body, algorithm, where)
            if actual != reference:
                raise DigestMismatchError(
                    f"manifest digest mismatch: the digest asked for is {reference}, "
                    f"the {len(body)} bytes served hash to {actual}",
                    expected=reference,
                    actual=actual,
                    **where,
                )
            if header and header != reference and header.split(":", 1)[0] == algorithm:
                raise DigestMismatchError(
                    f"manifest digest mismatch: the digest asked for is {reference}, "
                    f"Docker-Content-Digest says {header}",
                    expected=reference,
                    actual=header,
                    **where,
                )
            digest = reference
        else:
            digest = self._digest_of(body, "sha256", where)
            if not header:
                log.info(
                    "%s/%s:%s: no Docker-Content-Digest; using %s",
                    self.base_url,
                    repository,
                    reference,
                    digest,
                )
            elif header != digest and not (
                header.split(":", 1)[0] != "sha256"
                and self._digest_of(body, header.split(":", 1)[0], where, strict=False) == header
            ):
                log.warning(
                    "%s/%s:%s: Docker-Content-Digest %s does not match the %d bytes served (%s); "
                    "using the computed digest",
                    self.base_url,
                    repository,
                    reference,
                    header[:200],
                    len(body),
                    digest,
                )
        return FetchedManifest(
            content=body, media_type=normalize_media_type(resp.headers.get("Content-Type")), digest=digest
        )

    def _digest_of(self, body: bytes, algorithm: str, where: dict[str, Any], strict: bool = True) -> str:
        """`manifest_digest` with our errors: an unknown algorithm, or a schema 1 whose JWS is broken."""
        if algorithm not in ("sha256", "sha512"):
            if not strict:
                return ""
            raise ProtocolError(f"unsupported digest algorithm {algorithm!r}", **where)
        try:
            return manifest_digest(body, algorithm)
        except ManifestError as exc:
            raise exc.locate(**where) from None

    def head_manifest(self, repository: str, reference: str) -> str:
        """The digest `reference` names now, cheaply: HEAD with the full Accept list (change detection).

        The digest comes from `Docker-Content-Digest` (distribution-spec "Checking if content exists":
        a HEAD returns the headers a GET would); a registry that answers HEAD with 405, or leaves the
        header out (or sends one that is not a valid digest), gets a GET instead, whose bytes are hashed.
        For a digest reference, the answer must be that digest. Raises like `get_manifest`.
        """
        by_digest = self._manifest_target(repository, reference)
        resp, body = self._request(
            f"/v2/{repository}/manifests/{reference}",
            max_bytes=_ERROR_BODY_BYTES,
            repository=repository,
            reference=reference,
            headers={"Accept": ACCEPT},
            follow_redirects=True,
            method="HEAD",
        )
        if resp.status_code != 405:
            self._raise_for_status(resp, body, repository=repository, reference=reference)
            header: str = resp.headers.get("Docker-Content-Digest", "").strip()
            try:
                validate_digest(header)
            except ReferenceError:
                header = ""
            if header and (not by_digest or header == reference):
                return header
        return self.get_manifest(repository, reference).digest

    def blob_size(self, repository: str, digest: str) -> int:
        """A blob's size from HEAD `/v2/<name>/blobs/<digest>` (distribution-spec "Checking if content
        exists"): its `Content-Length`. Raises `ProtocolError` when the registry gives none."""
        validate_repository(repository)
        validate_digest(digest)
        resp, body = self._request(
            f"/v2/{repository}/blobs/{digest}",
            max_bytes=0,
            repository=repository,
            reference=digest,
            follow_redirects=True,
            method="HEAD",
        )
        self._raise_for_status(resp, body, repository=repository, reference=digest)
        length = resp.headers.get("Content-Length", "")
        if not length.isdigit():
            raise ProtocolError(
                "blob HEAD gave no Content-Length",
                registry=self.base_url,
                repository=repository,
                reference=digest,
            )
        return int(length)

    def get_blob(self, repository: str, digest: str, max_bytes: int = MAX_CONFIG_BYTES) -> bytes:
        """GET `/v2/<name>/blobs/<digest>` (distribution-spec "Pulling blobs"), following redirects.

        Meant for image configs: the whole body is held in memory, at most `max_bytes` (else
        `ProtocolError`), and must hash to `digest` (else `DigestMismatchError`). Credentials are not
        sent to a redirect target on another origin (`transport.Session`).
        """
        validate_repository(repository)
        validate_digest(digest)
        resp, body = self._request(
            f"/v2/{repository}/blobs/{digest}",
            max_bytes=max_bytes,
            repository=repository,
            reference=digest,
            # The digest is over the bytes as stored: no transfer coding for anyone to undo.
            headers={"Accept-Encoding": "identity"},
            follow_redirects=True,
        )
        self._raise_for_status(resp, body, repository=repository, reference=digest)
        actual = compute_digest(body, digest.split(":", 1)[0])
        if actual != digest:
            raise DigestMismatchError(
                f"blob digest mismatch: the {len(body)} bytes served hash to {actual}",
                expected=digest,
                actual=actual,
                registry=self.base_url,
                repository=repository,
                reference=digest,
            )
        return body

    @contextmanager
    def open_blob(
        self, repository: str, digest: str, *, chunk_size: int = 64 * 1024
    ) -> Iterator[Iterator[bytes]]:
        """Stream `/v2/<name>/blobs/<digest>` (distribution-spec "Pulling blobs") chunk by chunk.

        For layers too large to hold: nothing is buffered beyond one chunk, and the caller checks the
        digest over what it reads (this cannot, before the body is consumed). Same auth, redirects and
        network policy as every other request; `Accept-Encoding: identity`, so the bytes are as stored.
        An error status raises before anything is yielded; httpx failures while the caller reads are
        raised as `TransportError`.
        """
        validate_repository(repository)
        validate_digest(digest)
        url = f"/v2/{repository}/blobs/{digest}"
        where: dict[str, Any] = {"registry": self.base_url, "repository": repository, "reference": digest}
        try:
            with self._session.open(
                "GET",
                url,
                headers={"Accept-Encoding": "identity"},
                follow_redirects=True,
                scopes=self._scopes(url, repository),
                where=where,
            ) as resp:
                if resp.status_code >= 400 or resp.status_code < 200:
                    body = b""
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if len(body) >= _ERROR_BODY_BYTES:
                            break
                    self._raise_for_status(
                        resp, body[:_ERROR_BODY_BYTES], repository=repository, reference=digest
                    )
                yield resp.iter_bytes(chunk_size)
        except SlowTransfer as exc:
            raise SlowReplyError(f"reply too slow: {exc}", **where) from exc
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out: {type(exc).__name__}", **where) from exc
        except httpx.TransportError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc or 'connection failed'}", **where) from exc

    def get_config(self, repository: str, manifest: ParsedImageManifest) -> ParsedConfig:
        """The parsed image config a manifest names, fetched once per digest per client (an LRU cache).

        Its size must match the descriptor's (image-spec `descriptor.md`: size MUST match the content).
        """
        descriptor = manifest.config
        cached = self.cached_config(descriptor.digest)
        if cached is not None:
            return cached
        where: dict[str, Any] = {
            "registry": self.base_url,
            "repository": repository,
            "reference": descriptor.digest,
        }
        if descriptor.size > MAX_CONFIG_BYTES:
            raise ManifestError(
                f"image config of {descriptor.size} bytes is over the {MAX_CONFIG_BYTES} limit", **where
            )
        body = self.get_blob(repository, descriptor.digest)
        if len(body) != descriptor.size:
            raise ManifestError(
                f"image config is {len(body)} bytes, its descriptor says {descriptor.size}", **where
            )
        try:
            parsed = parse_config(body)
        except ManifestError as exc:
            raise exc.locate(**where) from None
        with self._cache_lock:
            self._config_cache[descriptor.digest] = parsed
            if len(self._config_cache) > self._config_cache_size:
                self._config_cache.popitem(last=False)
        return parsed

    def cached_config(self, digest: str) -> ParsedConfig | None:
        """The parsed config for `digest` if this client fetched it already (and still caches it)."""
        with self._cache_lock:
            cached = self._config_cache.get(digest)
            if cached is not None:
                self._config_cache.move_to_end(digest)
            return cached
