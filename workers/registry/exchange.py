"""One request to the registry and its reply, as every operation sends it: `Exchange`, the base of
`RegistryClient`'s operations (`listing`, `content`).

`_request` sends through the client's `transport.Session` (auth, redirects, retries, the SSRF policy),
reads at most a given number of bytes of a reply within the total time limit, and maps httpx's failures
to the error tree; `_raise_for_status` maps an error status and the registry's error body
(distribution-spec "Error Codes") to it; `_scopes` names the token scopes a request needs.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from .auth import CATALOG_SCOPE, repository_scope
from .errors import (
    ForbiddenError,
    HTTPStatusError,
    NotFoundError,
    ProtocolError,
    SlowReplyError,
    TransportError,
    UnauthorizedError,
    error_detail,
)
from .policy import SlowTransfer
from .transport import Session, parse_retry_after, redact_url

_ERROR_BODY_BYTES = 64 * 1024


class Exchange:
    """Requests to one registry and their replies, read within bounds; the attributes below are set
    by `RegistryClient`'s constructor."""

    base_url: str
    total_timeout: float
    _username: str | None
    _session: Session

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
