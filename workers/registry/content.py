"""Content: manifests, blobs and image configs (distribution-spec "Pull"), each checked against its
digest, as `Content`, a base of `RegistryClient`; `FetchedManifest`, a manifest's bytes as served.

Manifests and configs are read whole, size-capped (`MAX_MANIFEST_BYTES`, `MAX_CONFIG_BYTES`); a layer
is streamed (`open_blob`). Parsed configs are kept per client in an LRU cache.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from .errors import (
    DigestMismatchError,
    ManifestError,
    ProtocolError,
    ReferenceError,
    SlowReplyError,
    TransportError,
)
from .exchange import _ERROR_BODY_BYTES, Exchange
from .image_config import ParsedConfig, parse_config
from .manifests import ParsedImageManifest
from .media_types import ACCEPT, normalize_media_type
from .policy import SlowTransfer
from .reference import validate_digest, validate_repository, validate_tag
from .schema1 import manifest_digest

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution-spec: registries SHOULD accept manifests up to 4 MiB
MAX_CONFIG_BYTES = 4 * 1024 * 1024  # as for manifests; real configs are a few KiB (a long history: 100 KiB)

log = logging.getLogger(__name__)


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


class Content(Exchange):
    """Manifests, blobs and configs; the config cache is set up by `RegistryClient`'s constructor."""

    _config_cache: OrderedDict[str, ParsedConfig]
    _config_cache_size: int
    _cache_lock: threading.Lock

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
