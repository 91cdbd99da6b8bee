"""Every error the registry client raises, in one tree.

::

    RegistryError                      base; .registry, .repository, .reference, .transient
    ├── ReferenceError                 a bad reference or scan target; raised before any request
    ├── PolicyError                    a URL or address the SSRF policy refuses (policy.py); not sent
    ├── TransportError                 connection refused, reset, timeout, TLS failure (transient)
    │   └── SlowReplyError             a reply cut for being too slow: under the minimum transfer rate
    │                                  or past the total time limit (not transient: not retried)
    ├── HTTPStatusError                an error status; .status, .code (errors[0].code), .retry_after
    │   ├── UnauthorizedError          401: no, wrong or insufficient credentials; a failed token exchange
    │   ├── ForbiddenError             403
    │   └── NotFoundError              404 (NAME_UNKNOWN, MANIFEST_UNKNOWN, BLOB_UNKNOWN, ...)
    ├── ProtocolError                  the registry broke the API: pagination loop, cross-origin Link,
    │                                  a catalog or tag list that is not the documented JSON
    └── ManifestError                  a manifest or config malformed, unsupported, or contradicting
        └── DigestMismatchError        its declared type; bytes whose sha256 is not the expected digest

`transient` says whether trying again later may succeed: true for transport errors (but a reply cut
for being too slow), 408, 429 and 5xx; false for everything else (a 404 or a malformed manifest will
not fix itself), as Healthchecks marks transport errors. Callers (Celery tasks) retry on `transient` alone.

`ReferenceError` deliberately shadows the builtin of the same name inside this package's namespace;
import it qualified (`from workers.registry import errors`) where that could confuse.
"""

from __future__ import annotations

import json
from typing import Any


def describe(registry: str | None, repository: str | None, reference: str | None) -> str:
    """`registry/repository:reference` (or `@digest`), leaving out the parts that are unknown."""
    where = registry or ""
    if repository:
        where = f"{where}/{repository}" if where else repository
    if reference:
        sep = "@" if ":" in reference else ":"
        where = f"{where}{sep}{reference}" if where else reference
    return where or "registry"


class RegistryError(Exception):
    """Base of every error the registry client raises.

    The message always names what was being read (`registry/repository:reference`), so a failure
    recorded on a scan is readable without the traceback.
    """

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        registry: str | None = None,
        repository: str | None = None,
        reference: str | None = None,
    ) -> None:
        self.message = message
        self.registry = registry
        self.repository = repository
        self.reference = reference
        super().__init__(self._format())

    def _format(self) -> str:
        if not (self.registry or self.repository or self.reference):
            return self.message
        return f"{describe(self.registry, self.repository, self.reference)}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only arguments, which the default pickling (cls(*args)) cannot
        # pass; Celery pickles exceptions between worker and result backend, so rebuild from state.
        return (_rebuild, (type(self), self.args, self.__dict__.copy()))

    def locate(
        self, *, registry: str | None = None, repository: str | None = None, reference: str | None = None
    ) -> RegistryError:
        """Fill in where the error happened (parts already known are kept); return self to re-raise.

        Pure parsers raise without knowing the registry; the client adds it before the error leaves.
        """
        self.registry = self.registry or registry
        self.repository = self.repository or repository
        self.reference = self.reference or reference
        self.args = (self._format(),)
        return self


def _rebuild(cls: type[RegistryError], args: tuple[Any, ...], state: dict[str, Any]) -> RegistryError:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class ReferenceError(RegistryError):  # noqa: A001 - the name the design uses
    """A reference, repository name, tag, digest or scan target that the grammar rejects."""


class PolicyError(RegistryError):
    """A URL the client will not fetch: its address is internal (loopback, private, link-local, ...)
    and the registry is not allowed to be internal, a scheme other than http(s), a redirect from https
    to http, or too many redirects. Permanent: the same URL will be refused again.

    `registry_wide` is true when what was refused is the registry's own origin or its token realm:
    every request to the registry would be refused alike, so a repository snapshot stops (like a
    `TransportError`) instead of recording one failure per tag. A refused redirect target (blob
    storage) concerns that one request only.
    """

    registry_wide: bool = False

    def widen(self) -> PolicyError:
        """Mark the refusal as the registry's as a whole; return self to re-raise."""
        self.registry_wide = True
        return self


def stops_snapshot(exc: BaseException) -> bool:
    """Whether `exc` ends a whole repository snapshot rather than failing one tag or child."""
    return isinstance(exc, TransportError) or (isinstance(exc, PolicyError) and exc.registry_wide)


class TransportError(RegistryError):
    """The request did not get an HTTP answer: connection refused or reset, timeout, TLS error."""

    transient = True


class SlowReplyError(TransportError):
    """A reply that came, but too slowly: fewer bytes than the minimum transfer rate asks for in its
    window, or not complete within the total time limit (a drip). It stops the repository's snapshot
    like any `TransportError`, but is not transient: neither the client nor the tasks send it again,
    since each try of a reply dripped on purpose would hold a worker as long again (7 tries of 300 s,
    with the backoff, is over half an hour); the scan fails with it, and its next scheduled run tries
    again. A connection refused or reset, or a read timeout with nothing coming, stays transient."""

    transient = False


class HTTPStatusError(RegistryError):
    """The registry answered with an error status.

    `code` is the first `errors[].code` of the body (distribution spec, "Error Codes"), or None when the
    body is not the documented JSON; `retry_after` is the `Retry-After` header in seconds, when given.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        retry_after: float | None = None,
        registry: str | None = None,
        repository: str | None = None,
        reference: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after
        # 408 Request Timeout and 429 Too Many Requests are the client's "later"; 5xx the server's.
        self.transient = status in (408, 429) or status >= 500
        super().__init__(message, registry=registry, repository=repository, reference=reference)


def error_detail(body: bytes) -> tuple[str | None, str]:
    """(code, message) of the first entry of a distribution-spec error body ("Error Codes").

    The code becomes `HTTPStatusError.code`. (None, "") for a body that is not that JSON; a code that
    is not a string is None.
    """
    try:
        first = json.loads(body)["errors"][0]
        code = first.get("code")
        return (code if isinstance(code, str) else None), str(first.get("message") or "")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None, ""


class UnauthorizedError(HTTPStatusError):
    """401: no credentials, wrong credentials, a token exchange that failed, or a token without access."""


class ForbiddenError(HTTPStatusError):
    """403: the credentials are valid but not allowed to read this."""


class NotFoundError(HTTPStatusError):
    """404: no such repository (NAME_UNKNOWN), manifest (MANIFEST_UNKNOWN) or blob (BLOB_UNKNOWN)."""


class ProtocolError(RegistryError):
    """The registry answered, but not as the distribution spec says: a looping or cross-origin `Link`,
    a list that is not JSON, a body over the size limit."""


class ManifestError(RegistryError):
    """A manifest or image config that is malformed, unsupported (schema 1, artifacts), or contradicts
    its declared media type or the descriptor that pointed at it."""


class DigestMismatchError(ManifestError):
    """Content whose digest is not the one expected (asked for, announced, or in a descriptor)."""

    def __init__(
        self,
        message: str,
        *,
        expected: str,
        actual: str,
        registry: str | None = None,
        repository: str | None = None,
        reference: str | None = None,
    ) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(message, registry=registry, repository=repository, reference=reference)
