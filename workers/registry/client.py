"""A read-only client for the registry HTTP API v2 (distribution-spec "Pull" and "Content discovery").

Usage::

    with RegistryClient("http://127.0.0.1:5000", username="u", password="p") as client:
        client.ping()
        for name in client.iter_repositories():
            snapshot = client.snapshot_repository(name)

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
import itertools
import json
import logging
import re
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
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
    TransportError,
    UnauthorizedError,
    error_detail,
    stops_snapshot,
)
from .manifests import (
    ACCEPT,
    ANNOTATION_REFERENCE_DIGEST,
    ANNOTATION_REFERENCE_TYPE,
    MANIFEST_TYPES,
    READABLE_CHILD_TYPES,
    ParsedConfig,
    ParsedImageManifest,
    ParsedIndex,
    ParsedManifest,
    ParsedSchema1,
    build_artifact_record,
    build_image_record,
    build_index_record,
    build_schema1_record,
    is_attestation_entry,
    manifest_digest,
    normalize_media_type,
    parse_config,
    parse_manifest,
)
from .policy import GuardedTransport, NetworkPolicy, parse_networks
from .records import (
    KIND_ARTIFACT,
    ImageRecord,
    IndexChild,
    IndexRecord,
    ManifestFailure,
    ManifestRecord,
    Platform,
    RepositorySnapshot,
)
from .reference import (
    is_loopback_host,
    parse_scan_target,
    validate_digest,
    validate_repository,
    validate_tag,
)
from .transport import (
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
MAX_INDEX_DEPTH = 8  # an index may name an index to any depth (image-spec); real ones use 1 or 2 levels
MAX_INDEX_CHILDREN = 4096  # a 4 MiB index holds ~20,000 descriptors; real ones hold tens
MAX_SCHEMA1_LAYERS = 1024  # one blob HEAD per layer
_ERROR_BODY_BYTES = 64 * 1024
SNAPSHOT_BATCH = 256  # tags in flight per batch: bounds the manifest bytes held at once

# "Which of these digests do you already have?" -- asked by a snapshot of its caller (the ingest side),
# always from the calling thread, so the answer may come from a database connection bound to it.
KnownDigests = Callable[[Collection[str]], Collection[str]]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")

# Tags that name no image (containers/image, regclient and cosign use these conventions):
# - the referrers tag schema (distribution-spec "Referrers Tag Schema"): `<alg>-<hex>` naming the
#   subject, an index of its referrers; cosign adds `.sig`, `.att` and `.sbom` to the same form.
_REFERRERS_TAG = re.compile(r"^(sha256-[a-f0-9]{64}|sha512-[a-f0-9]{128})(?:\.([A-Za-z0-9_-]{1,64}))?$")
_ARTIFACT_SUFFIXES = {"sig": "signature", "att": "attestation", "sbom": "sbom"}


def classify_tag(tag: str) -> tuple[str, str] | None:
    """(what, subject digest) for a referrers / signature / attestation / SBOM tag; None for others.

    `sha256-<hex>` is "referrers"; with `.sig`, `.att` or `.sbom` it is "signature", "attestation" or
    "sbom" (cosign); with another suffix, "artifact". Only the digest form counts: `v1.sig` is a tag
    like any other, since nothing says it is about an image.
    """
    m = _REFERRERS_TAG.match(tag)
    if m is None:
        return None
    subject, suffix = m.group(1).replace("-", ":", 1), m.group(2)
    what = "referrers" if suffix is None else _ARTIFACT_SUFFIXES.get(suffix, "artifact")
    return what, subject


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


def _failure(reference: str, exc: RegistryError) -> ManifestFailure:
    return ManifestFailure(reference=reference, kind=type(exc).__name__, message=str(exc))


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
        trickles in under the read timeout still ends. Raises
        `ReferenceError` for a base URL with a path, query or bad host; a refused address raises
        `PolicyError` at the first request.
        """
        target = parse_scan_target(base_url)
        if target.repository is not None:
            raise ReferenceError(f"registry base URL {base_url!r} must not have a path")
        self.base_url = target.registry_url
        self.registry = httpx.URL(self.base_url).netloc.decode("ascii")
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
        """

        def call(item: _T) -> _R | RegistryError:
            try:
                return fn(item)
            except RegistryError as exc:
                if stops_snapshot(exc):
                    raise
                return exc

        if self.max_concurrency == 1 or len(items) <= 1:
            return [call(item) for item in items]
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="registry")
            pool = self._pool
        futures: list[Future[_R | RegistryError]] = [pool.submit(call, item) for item in items]
        try:
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.cancel()

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
        try:
            with self._session.open(
                method,
                url,
                headers=headers,
                follow_redirects=follow_redirects,
                scopes=self._scopes(url, repository),
                where=where,
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
                        raise TransportError(
                            f"reply not complete after {self.total_timeout:g}s (total time limit)", **where
                        )
                    total += len(chunk)
                    if total > limit:
                        if resp.status_code >= 400:
                            break  # an error body is only read for its message
                        raise ProtocolError(f"response exceeds the {limit}-byte limit", **where)
                    chunks.append(chunk)
                return resp, b"".join(chunks)[:limit]
        except httpx.TimeoutException as exc:
            raise TransportError(f"timed out: {type(exc).__name__}", **where) from exc
        except httpx.TooManyRedirects as exc:
            raise ProtocolError(f"too many redirects: {exc}", **where) from exc
        except httpx.DecodingError as exc:
            raise ProtocolError(f"undecodable response body: {exc}", **where) from exc
        except httpx.TransportError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc or 'connection failed'}", **where) from exc

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
        """
        validate_repository(repository)
        return self._paginate(f"/v2/{repository}/tags/list", "tags", repository=repository)

    def _resolve_link(self, current: httpx.URL, link: str, repository: str | None) -> httpx.URL:
        # RFC 8288 "Link": a relative target resolves against the request URL. Only same-origin
        # targets are followed, so credentials never leave the registry.
        try:
            target = current.join(link)
        except httpx.InvalidURL as exc:
            raise ProtocolError(
                f"invalid Link header {link!r}: {exc}", registry=self.base_url, repository=repository
            ) from exc
        if origin(target) != origin(current):
            raise ProtocolError(
                f"Link rel=next points to another origin "
                f"({target.scheme}://{target.netloc.decode()}); refused",
                registry=self.base_url,
                repository=repository,
            )
        return target

    def _paginate(self, path: str, key: str, *, repository: str | None) -> Iterator[str]:
        """Follow distribution-spec pagination ("Listing Tags"/catalog: `n`, `last`, `Link` rel=next).

        1. Ask for `n` = page size; on 400 PAGINATION_NUMBER_INVALID halve `n` and ask again.
        2. Yield the names not seen yet.
        3. Follow `Link` rel=next while there is one; stop with `ProtocolError` if a URL comes back
           (a loop), if several pages in a row bring nothing new, or past `MAX_PAGES`.
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

    # -- snapshot --------------------------------------------------------------------------------

    def snapshot_repository(
        self,
        repository: str,
        tags: Iterable[str] | None = None,
        *,
        previous: Mapping[str, str] | None = None,
        known_manifests: KnownDigests | None = None,
        known_configs: KnownDigests | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> RepositorySnapshot:
        """Read everything one repository holds now: tags, manifests (indexes and children), configs.

        1. List the tags (or take the ones given, deduplicated), streamed page by page and read in
           batches of `SNAPSHOT_BATCH`. A failure of the listing raises.
        2. GET each tag's manifest; parse it, once per digest even if several tags point at it.
           Referrers, signature, attestation and SBOM tags (`classify_tag`) are read too, since their
           manifests are stored, but recorded as artifacts linked to the digest in their name.
        3. An image: fetch its config (cached by digest) and record an `ImageRecord`. An artifact (an
           OCI artifact, a BuildKit attestation): record it without reading its config. A schema 1
           manifest: its layer sizes come from blob HEADs.
        4. An index: record an `IndexRecord`; fetch each child by digest (a visited set, a depth and a
           width cap), check it against the entry (digest, size, media type) and record it with the
           entry's platform (the config's if absent). Children of a type that is no manifest are
           `skipped`, not failed.
        5. A tag or child that cannot be read (malformed, digest mismatch, 404, 5xx, over a limit)
           becomes a `ManifestFailure` and the rest goes on. `TransportError` is not caught: a registry
           that stopped answering fails the snapshot, to be retried whole. Nor is a `PolicyError` that
           refuses the registry's own origin or its token realm (`registry_wide`): the snapshot fails
           with its message; a refused redirect target (blob storage) fails that one tag.

        Concurrency: the manifest GETs of a batch, then the configs and index children they name
        (level by level), are sent `max_concurrency` at a time over the client's kept-alive
        connections; parsing and recording stay in the calling thread, in tag order.

        What the caller already has is not fetched again (both callbacks are called from this thread):

        - `previous` (tag -> digest, an incremental rescan): each tag is asked with a HEAD first
          (distribution-spec "Checking if content exists"); a tag whose digest is unchanged costs that
          one request and gets no record. A changed or new tag is read by the digest the HEAD gave.
        - `known_manifests(digests)`: the digests the caller holds with their layers and children; a
          tag or index child naming one is not read further and has no record here.
        - `known_configs(digests)`: the config digests the caller holds; an image naming one is
          recorded from its manifest alone (`ImageRecord.config_known`), its config not fetched.

        `progress(done, listed)` is called from this thread after each batch: tags read (or failed) so
        far, and tags listed so far (the list streams in, so `listed` grows until the last page).

        A tag whose manifest failed is in `failures` only, not in `tags`. A digest among `tags` (a one-digest
        scan) is read and recorded like a tag but, not being a tag, is not in `tags`.
        """
        validate_repository(repository)
        names: Iterable[str] = self.iter_tags(repository) if tags is None else list(dict.fromkeys(tags))
        run = _SnapshotRun(self, repository, known_manifests=known_manifests, known_configs=known_configs)
        tag_map: dict[str, str] = {}
        artifact_tags: dict[str, str] = {}
        unchanged = 0
        done = 0
        for batch in _batches(names, SNAPSHOT_BATCH):
            # What each tag came to: an error, a digest needing no record, or manifest bytes to record.
            outcome: dict[str, RegistryError | str | FetchedManifest] = {}
            artifacts: dict[str, tuple[str, str]] = {}
            refs: dict[str, str] = {}  # tag -> the reference to GET
            for tag in batch:
                by_digest = ":" in tag
                artifact = None if by_digest else classify_tag(tag)
                if artifact is not None:
                    artifact_tags[tag] = artifact[0]
                    artifacts[tag] = artifact
                try:
                    validate_digest(tag) if by_digest else validate_tag(tag)
                except ReferenceError as exc:
                    outcome[tag] = exc
                    continue
                refs[tag] = tag
            if previous is not None:
                heads = self.map_requests(
                    lambda t: t if ":" in t else self.head_manifest(repository, t), list(refs)
                )
                for tag, head in zip(list(refs), heads, strict=True):
                    if isinstance(head, RegistryError):
                        outcome[tag] = head
                        del refs[tag]
                    elif ":" not in tag and previous.get(tag) == head:
                        outcome[tag] = head
                        unchanged += 1
                        del refs[tag]
                    else:
                        refs[tag] = head  # read by digest: what the HEAD named, even if the tag moves now
                known = run.known(refs.values())
                for tag, digest in list(refs.items()):
                    if digest in known:
                        outcome[tag] = digest
                        del refs[tag]
            gets = self.map_requests(lambda ref: self.get_manifest(repository, ref), list(refs.values()))
            outcome.update(zip(refs, gets, strict=True))
            known = run.known([g.digest for g in gets if isinstance(g, FetchedManifest)])
            for tag in refs:
                got = outcome[tag]
                if isinstance(got, FetchedManifest) and got.digest in known:
                    outcome[tag] = got.digest
            run.prefetch(
                [(got, tag in artifacts) for tag, got in outcome.items() if isinstance(got, FetchedManifest)]
            )
            for tag in batch:
                got = outcome[tag]
                by_digest = ":" in tag
                if isinstance(got, RegistryError):
                    run.failures.append(_failure(tag, got))
                    continue
                if isinstance(got, FetchedManifest):
                    error = run.record(got, reference=tag, artifact=artifacts.get(tag))
                    if error is not None:
                        run.failures.append(_failure(tag, error))
                        continue
                    got = got.digest
                if not by_digest:
                    tag_map[tag] = got
            done += len(batch)
            if progress is not None:
                progress(done, done)
        return RepositorySnapshot(
            registry_url=self.base_url,
            repository=repository,
            tags=tag_map,
            manifests=tuple(run.records.values()),
            failures=tuple(run.failures),
            skipped=tuple(run.skipped),
            artifact_tags=artifact_tags,
            unchanged=unchanged,
        )


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    """`items` in lists of at most `size`, consuming a generator lazily (tag pages stream in)."""
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _known_config_record(
    *, fetched: FetchedManifest, manifest: ParsedImageManifest, platform: Platform | None
) -> ImageRecord:
    """An image whose config the caller already has: the manifest's own facts, the rest left to it."""
    return ImageRecord(
        digest=fetched.digest,
        media_type=manifest.media_type,
        size=fetched.size,
        config=manifest.config,
        layers=manifest.layers,
        platform=platform or Platform(),
        created=None,
        subject=manifest.subject,
        annotations=dict(manifest.annotations),
        config_known=True,
    )


def _annotated_subject(child: IndexChild) -> str:
    value = child.annotations.get(ANNOTATION_REFERENCE_DIGEST, "")
    try:
        return validate_digest(value) if value else ""
    except ReferenceError:
        return ""


class _SnapshotRun:
    """The state of one `snapshot_repository` call: what was recorded, what failed, by digest."""

    def __init__(
        self,
        client: RegistryClient,
        repository: str,
        *,
        known_manifests: KnownDigests | None = None,
        known_configs: KnownDigests | None = None,
    ) -> None:
        self.client = client
        self.repository = repository
        self.records: dict[str, ManifestRecord] = {}
        self.failed: dict[str, RegistryError] = {}
        self.failures: list[ManifestFailure] = []
        self.skipped: list[ManifestFailure] = []
        self._known_manifests = known_manifests
        self._known_configs = known_configs
        self._answers: dict[tuple[bool, str], bool] = {}  # (is config, digest) -> known to the caller
        self._parsed: dict[tuple[str, str], ParsedManifest] = {}
        self.prefetched: dict[str, FetchedManifest | RegistryError] = {}
        self.config_errors: dict[str, RegistryError] = {}

    # -- what the caller has, and reading ahead -------------------------------------------------

    def _ask(self, digests: Iterable[str], *, config: bool) -> set[str]:
        callback = self._known_configs if config else self._known_manifests
        if callback is None:
            return set()
        digests = set(digests)
        new = [d for d in digests if (config, d) not in self._answers]
        if new:
            yes = set(callback(new))
            self._answers.update(((config, d), d in yes) for d in new)
        return {d for d in digests if self._answers[(config, d)]}

    def known(self, digests: Iterable[str]) -> set[str]:
        """The manifest digests among `digests` the caller already holds (asked once per digest)."""
        return self._ask(digests, config=False)

    def config_known(self, digest: str) -> bool:
        """True when the caller holds the config `digest` and this client has not parsed it already."""
        if self.client.cached_config(digest) is not None:
            return False
        return bool(self._ask([digest], config=True))

    def parse(self, fetched: FetchedManifest) -> ParsedManifest:
        """`parse_manifest`, once per digest and served type (reading ahead parses first)."""
        key = (fetched.digest, fetched.media_type)
        parsed = self._parsed.get(key)
        if parsed is None:
            parsed = self._parsed[key] = parse_manifest(fetched.content, fetched.media_type)
        return parsed

    def prefetch(self, level: list[tuple[FetchedManifest, bool]]) -> None:
        """Fetch ahead, concurrently, what `record` will ask for, level by level: the configs the
        images name and the children the indexes name. `level` holds (manifest, is an artifact).

        Only a cache: `record` checks everything again and fetches what is missing itself, so an
        error here (stored, raised where `record` would have met it) changes no outcome.
        """
        client = self.client
        for depth in range(MAX_INDEX_DEPTH + 1):
            configs: dict[str, ParsedImageManifest] = {}
            children: dict[str, IndexChild] = {}
            for fetched, artifact in level:
                if fetched.digest in self.records or fetched.digest in self.failed:
                    continue
                try:
                    parsed = self.parse(fetched)
                except RegistryError:
                    continue  # `record` reports it
                if isinstance(parsed, ParsedImageManifest):
                    config = parsed.config
                    if not artifact and parsed.kind != KIND_ARTIFACT and config.size <= MAX_CONFIG_BYTES:
                        configs.setdefault(config.digest, parsed)
                elif (
                    isinstance(parsed, ParsedIndex)
                    and depth < MAX_INDEX_DEPTH  # deeper, `record` fails the index unread
                    and len(parsed.children) <= MAX_INDEX_CHILDREN
                ):
                    for child in parsed.children:
                        if child.media_type in READABLE_CHILD_TYPES and child.digest not in self.records:
                            children.setdefault(child.digest, child)
            todo = [
                m
                for d, m in configs.items()
                if d not in self.config_errors and client.cached_config(d) is None
            ]
            known = self._ask([m.config.digest for m in todo], config=True)
            todo = [m for m in todo if m.config.digest not in known]
            got_configs = client.map_requests(lambda m: client.get_config(self.repository, m), todo)
            for m, config_got in zip(todo, got_configs, strict=True):
                if isinstance(config_got, RegistryError):
                    self.config_errors[m.config.digest] = config_got
            known = self.known(children)
            wanted = [c for d, c in children.items() if d not in known and d not in self.prefetched]
            if not wanted:
                return
            got_children = client.map_requests(
                lambda c: client.get_manifest(self.repository, c.digest), wanted
            )
            level = []
            for child, got in zip(wanted, got_children, strict=True):
                self.prefetched[child.digest] = got
                if isinstance(got, FetchedManifest):
                    level.append((got, bool(is_attestation_entry(child) or child.artifact_type)))

    # -- recording ------------------------------------------------------------------------------

    def record(
        self,
        fetched: FetchedManifest,
        *,
        reference: str,
        platform: Platform | None = None,
        depth: int = 0,
        expected_type: str | None = None,
        artifact: tuple[str, str] | None = None,
    ) -> RegistryError | None:
        """Record `fetched` (and, for an index, its children); return the error if it can't be read.

        `artifact` is (artifact type, subject digest) when the way we reached this manifest (a tag's
        name, an index entry's annotations) says it is an artifact whatever its content.
        """
        if fetched.digest in self.records:
            return None
        if fetched.digest in self.failed:
            return self.failed[fetched.digest]
        try:
            record = self._build(
                fetched,
                reference=reference,
                platform=platform,
                expected_type=expected_type,
                depth=depth,
                artifact=artifact,
            )
        except RegistryError as exc:
            if stops_snapshot(exc):
                raise
            self.failed[fetched.digest] = exc
            return exc
        self.records[fetched.digest] = record  # before the children: the visited set stops loops
        if isinstance(record, IndexRecord):
            self._children(record, depth, artifact)
        return None

    def _build(
        self,
        fetched: FetchedManifest,
        *,
        reference: str,
        platform: Platform | None,
        expected_type: str | None,
        depth: int,
        artifact: tuple[str, str] | None,
    ) -> ManifestRecord:
        client, repository = self.client, self.repository
        where: dict[str, Any] = {
            "registry": client.base_url,
            "repository": repository,
            "reference": reference,
        }
        try:
            parsed = self.parse(fetched)
        except ManifestError as exc:
            raise exc.locate(**where) from None
        if expected_type is not None and parsed.media_type != expected_type:
            # image-spec descriptor.md: the content's mediaType must be the one its descriptor names.
            raise ManifestError(
                f"index entry says {expected_type} but the manifest is {parsed.media_type}", **where
            )
        if isinstance(parsed, ParsedIndex):
            if depth >= MAX_INDEX_DEPTH:
                raise ManifestError(f"index nested deeper than {MAX_INDEX_DEPTH} levels", **where)
            if len(parsed.children) > MAX_INDEX_CHILDREN:
                raise ManifestError(
                    f"index of {len(parsed.children)} entries is over the {MAX_INDEX_CHILDREN} limit", **where
                )
            return build_index_record(digest=fetched.digest, size=fetched.size, index=parsed)
        if isinstance(parsed, ParsedSchema1):
            return self._schema1(fetched, parsed, platform, where)
        if parsed.kind == KIND_ARTIFACT or artifact is not None:
            artifact_type, subject = artifact or ("", "")
            return build_artifact_record(
                digest=fetched.digest,
                size=fetched.size,
                manifest=parsed,
                artifact_type=artifact_type,
                subject=subject,
                platform=platform,
            )
        config_error = self.config_errors.get(parsed.config.digest)
        if config_error is not None:
            raise config_error
        if self.config_known(parsed.config.digest):
            return _known_config_record(fetched=fetched, manifest=parsed, platform=platform)
        config = client.get_config(repository, parsed)
        record: ImageRecord = build_image_record(
            digest=fetched.digest, size=fetched.size, manifest=parsed, config=config, platform=platform
        )
        return record

    def _schema1(
        self,
        fetched: FetchedManifest,
        parsed: ParsedSchema1,
        platform: Platform | None,
        where: dict[str, Any],
    ) -> ImageRecord:
        """Schema 1 names its layers without sizes: HEAD each distinct blob, or fail as unsupported."""
        distinct = list(dict.fromkeys(parsed.layers))
        if len(distinct) > MAX_SCHEMA1_LAYERS:
            raise ManifestError(f"unsupported: schema 1 manifest with {len(distinct)} layers", **where)
        sizes: dict[str, int] = {}
        for digest in distinct:
            try:
                sizes[digest] = self.client.blob_size(self.repository, digest)
            except RegistryError as exc:
                if stops_snapshot(exc):
                    raise
                raise ManifestError(
                    f"unsupported: Docker schema 1 manifest whose layer sizes cannot be read "
                    f"(blob {digest}: {exc})",
                    **where,
                ) from None
        return build_schema1_record(
            digest=fetched.digest, size=fetched.size, manifest=parsed, sizes=sizes, platform=platform
        )

    def _children(self, index: IndexRecord, depth: int, artifact: tuple[str, str] | None) -> None:
        known = self.known(c.digest for c in index.children)
        for child in index.children:
            if child.digest in self.records or child.digest in self.failed or child.digest in known:
                continue
            if child.media_type not in READABLE_CHILD_TYPES:
                self.skipped.append(
                    ManifestFailure(
                        reference=child.digest,
                        kind="Skipped",
                        message=f"index {index.digest} entry of media type {child.media_type!r} not read",
                    )
                )
                continue
            try:
                ahead = self.prefetched.pop(child.digest, None)
                if isinstance(ahead, RegistryError):
                    raise ahead
                fetched = ahead or self.client.get_manifest(self.repository, child.digest)
                if fetched.size != child.size:
                    raise ManifestError(
                        f"manifest is {fetched.size} bytes, the index entry says {child.size}",
                        registry=self.client.base_url,
                        repository=self.repository,
                        reference=child.digest,
                    )
            except RegistryError as exc:
                if stops_snapshot(exc):
                    raise
                self.failed[child.digest] = exc
                self.failures.append(_failure(child.digest, exc))
                continue
            child_artifact = artifact
            if is_attestation_entry(child):
                kind = child.annotations.get(ANNOTATION_REFERENCE_TYPE) or "attestation-manifest"
                child_artifact = (child.artifact_type or kind, _annotated_subject(child))
            elif child.artifact_type and child_artifact is None:
                child_artifact = (child.artifact_type, index.subject)
            error = self.record(
                fetched,
                reference=child.digest,
                platform=child.platform,
                depth=depth + 1,
                expected_type=child.media_type if child.media_type in MANIFEST_TYPES else None,
                artifact=child_artifact,
            )
            if error is not None:
                self.failures.append(_failure(child.digest, error))
