"""A read-only client for the registry HTTP API v2 (distribution-spec "Pull" and "Content discovery").

Usage::

    with RegistryClient("http://127.0.0.1:5000", username="u", password="p") as client:
        client.ping()
        for name in client.iter_repositories():
            snapshot = client.snapshot_repository(name)

One `httpx.Client` per instance (connection pooling, limits, timeouts). Configuration comes only from
the constructor; `transport` takes an `httpx.MockTransport` in tests. Every body read is size-capped
and every manifest and config is checked against its digest before it is parsed.

Authentication: HTTP basic, sent preemptively. A registry that answers with a token (Bearer) challenge
gets an `UnauthorizedError` saying so; token auth is a later issue.
"""

from __future__ import annotations

import functools
import hashlib
import json
import ssl
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from .errors import (
    DigestMismatchError,
    ForbiddenError,
    HTTPStatusError,
    ManifestError,
    NotFoundError,
    ProtocolError,
    ReferenceError,
    RegistryError,
    TransportError,
    UnauthorizedError,
)
from .manifests import (
    ACCEPT,
    MANIFEST_TYPES,
    ParsedConfig,
    ParsedImageManifest,
    ParsedIndex,
    build_image_record,
    build_index_record,
    normalize_media_type,
    parse_config,
    parse_manifest,
)
from .records import ImageRecord, IndexRecord, ManifestFailure, ManifestRecord, Platform, RepositorySnapshot
from .reference import parse_scan_target, validate_digest, validate_repository, validate_tag

MAX_PAGE_SIZE = 1000  # distribution's default `catalog.maxentries`; it answers 400 above its limit
MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution-spec: registries SHOULD accept manifests up to 4 MiB
MAX_CONFIG_BYTES = 16 * 1024 * 1024
MAX_LIST_PAGE_BYTES = 32 * 1024 * 1024
MAX_PAGES = 100_000
MAX_IDLE_PAGES = 3  # consecutive pages with a `next` link and nothing new: a loop with changing URLs
MAX_INDEX_DEPTH = 3  # an index may name an index (image-spec allows it); deeper than this is hostile
_ERROR_BODY_BYTES = 64 * 1024


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


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default


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
    ) -> None:
        """Open a client for `base_url` (`http(s)://host[:port]`; a bare `host:port` is accepted too).

        `verify` is True, False, a path to a CA bundle, or an `ssl.SSLContext` (e.g. built from PEM
        data). `page_size` is capped at 1000. Raises `ReferenceError` for a base URL with a path, query
        or bad host.
        """
        target = parse_scan_target(base_url)
        if target.repository is not None:
            raise ReferenceError(f"registry base URL {base_url!r} must not have a path")
        self.base_url = target.registry_url
        self.registry = httpx.URL(self.base_url).netloc.decode("ascii")
        self.page_size = max(1, min(int(page_size), MAX_PAGE_SIZE))
        self._has_credentials = username is not None
        self._username = username
        ssl_verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        if ssl_verify is True:
            ssl_verify = _default_ssl_context()
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=httpx.BasicAuth(username, password or "") if username is not None else None,
            verify=ssl_verify,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
            headers={"User-Agent": user_agent},
            follow_redirects=False,
        )
        self._config_cache: OrderedDict[str, ParsedConfig] = OrderedDict()
        self._config_cache_size = config_cache_size

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

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
    ) -> tuple[httpx.Response, bytes]:
        """GET `url`, reading at most `max_bytes` of a success body; map httpx failures to ours."""
        where = {"registry": self.base_url, "repository": repository, "reference": reference}
        try:
            with self._http.stream("GET", url, headers=headers, follow_redirects=follow_redirects) as resp:
                limit = max_bytes if resp.status_code < 400 else _ERROR_BODY_BYTES
                declared = resp.headers.get("Content-Length")
                if resp.status_code < 400 and declared and declared.isdigit() and int(declared) > limit:
                    raise ProtocolError(
                        f"response of {declared} bytes exceeds the {limit}-byte limit", **where
                    )
                chunks: list[bytes] = []
                total = 0
                for chunk in resp.iter_bytes():
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

    @staticmethod
    def _error_details(body: bytes) -> tuple[str | None, str]:
        """(code, message) of the first entry of a distribution-spec error body ("Error Codes")."""
        try:
            doc = json.loads(body)
            first = doc["errors"][0]
            code = first.get("code")
            message = first.get("message") or ""
            return (code if isinstance(code, str) else None), str(message)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            return None, ""

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
        code, detail = self._error_details(body)
        text = (
            f"HTTP {status}"
            + (f" {code}" if code else f" {resp.reason_phrase}")
            + (f": {detail}" if detail else "")
        )
        retry_after = None
        raw_retry = resp.headers.get("Retry-After", "")
        if raw_retry.strip().isdigit():
            retry_after = float(raw_retry.strip())
        kwargs: dict[str, Any] = {"status": status, "code": code, "retry_after": retry_after, **where}
        if status == 401:
            challenge = resp.headers.get("WWW-Authenticate", "")
            if challenge.lower().startswith("bearer"):
                raise UnauthorizedError(
                    f"{text}; the registry asks for token (Bearer) authentication, which is not supported "
                    f"yet (challenge: {challenge[:200]})",
                    **kwargs,
                )
            if self._has_credentials:
                raise UnauthorizedError(f"{text}; credentials for user {self._username!r} rejected", **kwargs)
            raise UnauthorizedError(
                f"{text}; the registry requires credentials and none are configured", **kwargs
            )
        if status == 403:
            raise ForbiddenError(text, **kwargs)
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
        if _origin(target) != _origin(current):
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
            if resp.status_code == 400 and page_size > 1:
                code, _ = self._error_details(body)
                if code == "PAGINATION_NUMBER_INVALID":
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

    def get_manifest(self, repository: str, reference: str) -> FetchedManifest:
        """GET `/v2/<name>/manifests/<reference>` (distribution-spec "Pulling manifests"), verified.

        `reference` is a tag or a digest. Integrity (distribution-spec "Content Digests"): when asked by
        digest, the body must hash to it; when asked by tag, it must hash to `Docker-Content-Digest` if
        the registry sends one. Raises `ReferenceError` before any request for a bad name, tag or
        digest; `DigestMismatchError`; `NotFoundError` (MANIFEST_UNKNOWN, NAME_UNKNOWN); and the rest.
        """
        validate_repository(repository)
        by_digest = ":" in reference
        if by_digest:
            validate_digest(reference)
        else:
            validate_tag(reference)
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
        computed = compute_digest(body)
        if by_digest:
            expected, source = reference, "the digest asked for"
        else:
            expected, source = resp.headers.get("Docker-Content-Digest", "").strip(), "Docker-Content-Digest"
        if expected:
            algorithm = expected.split(":", 1)[0]
            try:
                actual = compute_digest(body, algorithm) if algorithm != "sha256" else computed
            except ValueError:
                raise ProtocolError(f"{source} {expected!r} uses an unknown algorithm", **where) from None
            if actual != expected:
                raise DigestMismatchError(
                    f"manifest digest mismatch: {source} is {expected}, "
                    f"the {len(body)} bytes served hash to {actual}",
                    expected=expected,
                    actual=actual,
                    **where,
                )
        digest = reference if by_digest else computed
        return FetchedManifest(
            content=body, media_type=normalize_media_type(resp.headers.get("Content-Type")), digest=digest
        )

    def get_blob(self, repository: str, digest: str, max_bytes: int = MAX_CONFIG_BYTES) -> bytes:
        """GET `/v2/<name>/blobs/<digest>` (distribution-spec "Pulling blobs"), following redirects.

        Meant for image configs: the whole body is held in memory, at most `max_bytes` (else
        `ProtocolError`), and must hash to `digest` (else `DigestMismatchError`). Credentials are not
        sent to a redirect target on another origin (httpx strips them).
        """
        validate_repository(repository)
        validate_digest(digest)
        resp, body = self._request(
            f"/v2/{repository}/blobs/{digest}",
            max_bytes=max_bytes,
            repository=repository,
            reference=digest,
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

    def get_config(self, repository: str, manifest: ParsedImageManifest) -> ParsedConfig:
        """The parsed image config a manifest names, fetched once per digest per client (an LRU cache).

        Its size must match the descriptor's (image-spec `descriptor.md`: size MUST match the content).
        """
        descriptor = manifest.config
        cached = self._config_cache.get(descriptor.digest)
        if cached is not None:
            self._config_cache.move_to_end(descriptor.digest)
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
        self._config_cache[descriptor.digest] = parsed
        if len(self._config_cache) > self._config_cache_size:
            self._config_cache.popitem(last=False)
        return parsed

    # -- snapshot --------------------------------------------------------------------------------

    def snapshot_repository(self, repository: str, tags: Iterable[str] | None = None) -> RepositorySnapshot:
        """Read everything one repository holds now: tags, manifests (indexes and children), configs.

        1. List the tags (or take the ones given, deduplicated). A failure here raises.
        2. GET each tag's manifest; parse it, once per digest even if several tags point at it.
        3. An image: fetch its config (cached by digest) and record an `ImageRecord`.
        4. An index: record an `IndexRecord`; fetch each child by digest, check it against the entry
           (sha256, size, media type) and record it with the entry's platform (the config's if absent).
        5. A tag or child that cannot be read (malformed, digest mismatch, 404, 5xx, schema 1, artifact)
           becomes a `ManifestFailure` and the rest goes on. `TransportError` is not caught: a registry
           that stopped answering fails the snapshot, to be retried whole.

        A tag whose manifest failed is in `failures` only, not in `tags`. A digest among `tags` (a one-digest
        scan) is read and recorded like a tag but, not being a tag, is not in `tags`.
        """
        validate_repository(repository)
        names = list(self.iter_tags(repository)) if tags is None else list(dict.fromkeys(tags))
        run = _SnapshotRun(self, repository)
        tag_map: dict[str, str] = {}
        for tag in names:
            by_digest = ":" in tag
            try:
                validate_digest(tag) if by_digest else validate_tag(tag)
                fetched = self.get_manifest(repository, tag)
            except TransportError:
                raise
            except RegistryError as exc:
                run.failures.append(_failure(tag, exc))
                continue
            error = run.record(fetched, reference=tag)
            if error is not None:
                run.failures.append(_failure(tag, error))
                continue
            if not by_digest:
                tag_map[tag] = fetched.digest
        return RepositorySnapshot(
            registry_url=self.base_url,
            repository=repository,
            tags=tag_map,
            manifests=tuple(run.records.values()),
            failures=tuple(run.failures),
        )


class _SnapshotRun:
    """The state of one `snapshot_repository` call: what was recorded, what failed, by digest."""

    def __init__(self, client: RegistryClient, repository: str) -> None:
        self.client = client
        self.repository = repository
        self.records: dict[str, ManifestRecord] = {}
        self.failed: dict[str, RegistryError] = {}
        self.failures: list[ManifestFailure] = []

    def record(
        self,
        fetched: FetchedManifest,
        *,
        reference: str,
        platform: Platform | None = None,
        depth: int = 0,
        expected_type: str | None = None,
    ) -> RegistryError | None:
        """Record `fetched` (and, for an index, its children); return the error if it can't be read."""
        if fetched.digest in self.records:
            return None
        if fetched.digest in self.failed:
            return self.failed[fetched.digest]
        try:
            record = self._build(
                fetched, reference=reference, platform=platform, expected_type=expected_type, depth=depth
            )
        except TransportError:
            raise
        except RegistryError as exc:
            self.failed[fetched.digest] = exc
            return exc
        self.records[fetched.digest] = record
        if isinstance(record, IndexRecord):
            self._children(record, depth)
        return None

    def _build(
        self,
        fetched: FetchedManifest,
        *,
        reference: str,
        platform: Platform | None,
        expected_type: str | None,
        depth: int,
    ) -> ManifestRecord:
        client, repository = self.client, self.repository
        where: dict[str, Any] = {
            "registry": client.base_url,
            "repository": repository,
            "reference": reference,
        }
        try:
            parsed = parse_manifest(fetched.content, fetched.media_type)
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
            return build_index_record(digest=fetched.digest, size=fetched.size, index=parsed)
        config = client.get_config(repository, parsed)
        record: ImageRecord = build_image_record(
            digest=fetched.digest, size=fetched.size, manifest=parsed, config=config, platform=platform
        )
        return record

    def _children(self, index: IndexRecord, depth: int) -> None:
        for child in index.children:
            if child.digest in self.records or child.digest in self.failed:
                continue
            try:
                fetched = self.client.get_manifest(self.repository, child.digest)
                if fetched.size != child.size:
                    raise ManifestError(
                        f"manifest is {fetched.size} bytes, the index entry says {child.size}",
                        registry=self.client.base_url,
                        repository=self.repository,
                        reference=child.digest,
                    )
            except TransportError:
                raise
            except RegistryError as exc:
                self.failed[child.digest] = exc
                self.failures.append(_failure(child.digest, exc))
                continue
            expected = child.media_type if child.media_type in MANIFEST_TYPES else None
            error = self.record(
                fetched,
                reference=child.digest,
                platform=child.platform,
                depth=depth + 1,
                expected_type=expected,
            )
            if error is not None:
                self.failures.append(_failure(child.digest, error))
