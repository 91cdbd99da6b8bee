"""Registry authentication: `WWW-Authenticate` challenges, credentials, and the token flow.

The flow (distribution `docs/spec/auth/token.md`; containerd `remotes/docker/authorizer.go`):

1. A request answered 401 carries one or more challenges (RFC 7235 section 4.1). `parse_www_authenticate`
   reads them all, from every header; `select_challenge` prefers Bearer over Basic.
2. Basic: the credentials go in `Authorization` on the registry's origin, and nowhere else.
3. Bearer: ask the challenge's `realm` (resolved against the request URL; checked by the SSRF policy)
   for a token for `service` and the scopes the request needs (`repository:NAME:pull`,
   `registry:catalog:*`, plus the challenge's own `scope`); never an empty `scope=`.
   As docker does (distribution `registry/client/auth/session.go`, `fetchToken`): with a password, the
   classic GET with basic credentials (and `account=USER`); with an identity token (docker's
   `identitytoken`), the OAuth2 POST `grant_type=refresh_token` (token.md "Using OAuth2"), and on any
   answer but a token, a refusal (401, 403) or a passing failure (408, 429, 5xx but 501) one anonymous
   GET instead, as containerd falls back (there is no password to send). A realm that answers the
   password GET with 400, 404, 405 or 501 (it speaks only OAuth2) gets one POST `grant_type=password`.
   A refusal of a password is final: it is never tried a second way. Without credentials: an
   anonymous GET.
4. The reply's `access_token` (OAuth2) or `token`, valid `expires_in` seconds (default and minimum 60,
   token.md "Token Response Fields"), is cached per (registry, realm, service, scopes, credential) and
   used until `REFRESH_MARGIN` seconds before it expires.
5. A 401 to a token: `error="insufficient_scope"` gets one more token with the challenge's scope,
   `error="invalid_token"` one refreshed token; anything else, or the same answer again, is final:
   the token is valid but grants no access (or the repository does not exist).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from .errors import HTTPStatusError, PolicyError, ProtocolError, UnauthorizedError

DEFAULT_TOKEN_SECONDS = 60  # token.md: "If omitted, a default of 60 seconds should be assumed"
MIN_TOKEN_SECONDS = 60  # distribution's client raises shorter lifetimes to this
REFRESH_MARGIN = 30.0  # refresh this long before expiry, so a token does not lapse mid-request
MAX_TOKEN_BODY_BYTES = 64 * 1024
CATALOG_SCOPE = "registry:catalog:*"
CLIENT_ID = "layerlens"
# Answers to the password GET from a realm that speaks only the OAuth2 POST (no method, no endpoint,
# or a missing `grant_type`): the POST is tried once. Never 401 or 403, the verdict on the password.
_GET_FALLBACK_STATUSES = frozenset({400, 404, 405, 501})
_REFUSED = frozenset({401, 403})

_TCHAR = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 7230 3.2.6 token
_UNQUOTED = re.compile(r'[^,\s"]+')
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 7235 2.1


def repository_scope(repository: str, actions: str = "pull") -> str:
    """`repository:NAME:ACTIONS` (token.md "Requesting a Token", scope grammar in `scope.md`)."""
    return f"repository:{repository}:{actions}"


@dataclass
class Challenge:
    """One auth challenge: a lower-cased scheme, its parameters (lower-cased names), or a token68."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def realm(self) -> str:
        """The `realm` parameter ("" when absent)."""
        return self.params.get("realm", "")

    @property
    def error(self) -> str:
        """RFC 6750 3.1 `error` (`invalid_token`, `insufficient_scope`), "" when absent."""
        return self.params.get("error", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        """The space-separated `scope` parameter, split."""
        return tuple(s for s in self.params.get("scope", "").split(" ") if s)


def _skip(s: str, i: int, chars: str) -> int:
    while i < len(s) and s[i] in chars:
        i += 1
    return i


def _quoted(s: str, i: int) -> tuple[str, int]:
    """RFC 7230 3.2.6 quoted-string starting at s[i] == '"'; backslash escapes the next character."""
    out: list[str] = []
    i += 1
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    return "".join(out), i  # unterminated: take the rest, as Go's net/http does


def _param_follows(s: str, i: int) -> bool:
    """Whether s[i:] starts an auth-param (`token BWS "=" BWS (token / quoted-string)`)."""
    m = _TCHAR.match(s, i)
    if not m:
        return False
    j = _skip(s, m.end(), " \t")
    if j >= len(s) or s[j] != "=":
        return False
    k = _skip(s, j + 1, " \t")
    # A value never starts with "=": `abc==` is a token68, not abc="=".
    return k < len(s) and (s[k] == '"' or (s[k] != "=" and _UNQUOTED.match(s, k) is not None))


def _parse_header(s: str) -> list[Challenge]:
    challenges: list[Challenge] = []
    current: Challenge | None = None
    i = 0
    while True:
        i = _skip(s, i, " \t,")
        if i >= len(s):
            return challenges
        if current is not None and _param_follows(s, i):
            m = _TCHAR.match(s, i)
            assert m is not None
            name = m.group().lower()
            i = _skip(s, _skip(s, m.end(), " \t") + 1, " \t")
            if s[i] == '"':
                value, i = _quoted(s, i)
            else:
                # Leniently, an unquoted value runs to the next comma or space: registries send
                # `realm=https://...` unquoted although ':' and '/' are not token characters.
                vm = _UNQUOTED.match(s, i)
                assert vm is not None
                value, i = vm.group(), vm.end()
            current.params.setdefault(name, value)  # RFC 7235: a name MUST occur once; keep the first
            continue
        m = _TCHAR.match(s, i)
        if not m:  # garbage: drop up to the next comma
            nxt = s.find(",", i)
            if nxt < 0:
                return challenges
            i = nxt + 1
            continue
        current = Challenge(scheme=m.group().lower())
        challenges.append(current)
        i = _skip(s, m.end(), " \t")
        if i < len(s) and s[i] != "," and not _param_follows(s, i):
            t = _TOKEN68.match(s, i)
            if t:
                end = _skip(s, t.end(), " \t")
                if end >= len(s) or s[end] == ",":
                    current.token68 = t.group()
                    i = end


def parse_www_authenticate(values: Iterable[str]) -> list[Challenge]:
    """Every challenge in every `WWW-Authenticate` value, in order (RFC 7235 section 4.1).

    Handles several challenges in one header, quoted strings with commas and backslash escapes,
    unquoted parameter values, spaces around "=", case-insensitive schemes and parameter names.
    """
    out: list[Challenge] = []
    for value in values:
        out.extend(_parse_header(value))
    return out


def select_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: the first Bearer with a realm, else the first Basic, else None."""
    challenges = list(challenges)
    for c in challenges:
        if c.scheme == "bearer" and c.realm:
            return c
    for c in challenges:
        if c.scheme == "basic":
            return c
    return None


@dataclass(frozen=True)
class Credentials:
    """A user name and password, or an identity (OAuth2 refresh) token; `repr` never shows secrets."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    identity_token: str | None = field(default=None, repr=False)

    @property
    def present(self) -> bool:
        """Whether there is anything to authenticate with."""
        return bool(self.identity_token) or self.username is not None

    @property
    def fingerprint(self) -> str:
        """A digest naming these credentials in cache keys, so the secret itself is never a key."""
        raw = f"{self.username or ''}\0{self.password or ''}\0{self.identity_token or ''}"
        return hashlib.sha256(raw.encode()).hexdigest()[:32]

    def basic_header(self) -> str:
        """`Basic base64(user:password)` (RFC 7617)."""
        raw = f"{self.username or ''}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def describe(self) -> str:
        """Who the credentials are, for messages: never the secret."""
        if self.identity_token:
            return "the identity token"
        return f"user {self.username!r}" if self.username is not None else "anonymous"


@dataclass(frozen=True)
class Token:
    """A bearer token and when (time.monotonic()) it stops being used."""

    value: str = field(repr=False)
    expires_at: float


TokenKey = tuple[str, str, str, tuple[str, ...], str]


class TokenCache:
    """Bearer tokens by (registry, realm, service, scopes, credential fingerprint); an LRU, thread-safe.

    One instance is shared by every client of a process (`SHARED_TOKEN_CACHE`), so consecutive scans
    of one registry reuse a token while it is fresh.
    """

    def __init__(self, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[TokenKey, Token] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries
        self.clock = clock

    def get(self, key: TokenKey) -> Token | None:
        """The cached token, or None when there is none or it is within `REFRESH_MARGIN` of expiry."""
        with self._lock:
            token = self._entries.get(key)
            if token is None:
                return None
            if token.expires_at - REFRESH_MARGIN <= self.clock():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return token

    def put(self, key: TokenKey, token: Token) -> None:
        """Store `token` under `key`, evicting the least recently used beyond the size limit."""
        with self._lock:
            self._entries[key] = token
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def drop(self, key: TokenKey) -> None:
        """Forget the token under `key` (after the registry called it invalid)."""
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        """Forget every token (tests that count a token server's requests start from none)."""
        with self._lock:
            self._entries.clear()


SHARED_TOKEN_CACHE = TokenCache()


def parse_token_reply(body: bytes, *, now: float) -> Token:
    """A `Token` from a token endpoint's JSON reply; raises `ValueError` for a reply without a token."""
    doc = json.loads(body)
    if not isinstance(doc, dict):
        raise ValueError("the reply is not a JSON object")
    value = doc.get("access_token") or doc.get("token")
    if not isinstance(value, str) or not value:
        raise ValueError("the reply has neither 'token' nor 'access_token'")
    expires_in = doc.get("expires_in")
    seconds = expires_in if isinstance(expires_in, int) and not isinstance(expires_in, bool) else 0
    seconds = max(seconds or DEFAULT_TOKEN_SECONDS, MIN_TOKEN_SECONDS)
    return Token(value=value, expires_at=now + seconds)


def _read_limited(resp: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    for chunk in resp.iter_bytes():
        total += len(chunk)
        chunks.append(chunk)
        if total > limit:
            break
    return b"".join(chunks)[:limit]


def fetch_token(
    http: httpx.Client,
    *,
    realm: httpx.URL,
    service: str,
    scopes: tuple[str, ...],
    credentials: Credentials,
    registry: str,
    repository: str | None,
    clock: Callable[[], float] = time.monotonic,
) -> Token:
    """Ask `realm` for a token (steps 3 and 4 of the module docstring); never follows redirects.

    Raises `UnauthorizedError` when the realm refuses the credentials or answers without a token;
    httpx transport errors propagate for the caller to map.
    """
    query: list[tuple[str, str]] = []
    if service:
        query.append(("service", service))
    query += [("scope", s) for s in scopes if s]
    where: dict[str, Any] = {"registry": registry, "repository": repository}
    shown = f"{realm.scheme}://{realm.netloc.decode('ascii', 'replace')}{realm.path}"

    def send(method: str, **kwargs: object) -> tuple[httpx.Response, bytes]:
        with http.stream(method, realm, follow_redirects=False, **kwargs) as resp:  # type: ignore[arg-type]
            return resp, _read_limited(resp, MAX_TOKEN_BODY_BYTES)

    def post(grant: dict[str, str]) -> tuple[httpx.Response, bytes]:
        form = {"service": service, "client_id": CLIENT_ID, "access_type": "offline", **grant}
        if scopes:
            form["scope"] = " ".join(scopes)
        return send("POST", data=form)

    if credentials.identity_token:
        resp, body = post({"grant_type": "refresh_token", "refresh_token": credentials.identity_token})
        status = resp.status_code
        busy = status in (408, 429) or (status >= 500 and status != 501)  # retried later, as it is
        if status != 200 and status not in _REFUSED and not busy:
            resp, body = send("GET", params=query)
    elif credentials.username is not None:
        # The GET first: docker logs in this way, so every realm docker works with answers it, while
        # some answer the POST 404 or 501.
        resp, body = send(
            "GET",
            params=[*query, ("account", credentials.username)],
            headers={"Authorization": credentials.basic_header()},
        )
        if resp.status_code in _GET_FALLBACK_STATUSES:
            resp, body = post(
                {
                    "grant_type": "password",
                    "username": credentials.username,
                    "password": credentials.password or "",
                }
            )
    else:
        resp, body = send("GET", params=query)

    if resp.status_code in (401, 403):
        if credentials.identity_token:
            hint = "check the identity token saved for this registry"
        elif credentials.present:
            hint = "check the user name and password saved for this registry"
        else:
            hint = (
                "this registry needs credentials: add them with `manage.py registry add URL "
                "--username USER --password-stdin`"
            )
        raise UnauthorizedError(
            f"the token server {shown} refused {credentials.describe()} (HTTP {resp.status_code}); {hint}",
            status=401,
            **where,
        )
    if resp.status_code in (408, 429) or resp.status_code >= 500:
        raise HTTPStatusError(
            f"the token server {shown} answered HTTP {resp.status_code}; try again later",
            status=resp.status_code,
            **where,
        )
    if resp.status_code != 200:
        raise UnauthorizedError(
            f"the token server {shown} answered HTTP {resp.status_code} instead of a token",
            status=401,
            **where,
        )
    try:
        return parse_token_reply(body, now=clock())
    except ValueError as exc:
        raise ProtocolError(f"the token server {shown} sent an unusable reply: {exc}", **where) from None


@dataclass
class AuthRound:
    """What one request has tried so far, so each retry of step 5 happens at most once."""

    basic: bool = False
    token: bool = False
    scope_retry: bool = False
    refreshed: bool = False


@dataclass(frozen=True)
class _Bearer:
    realm: httpx.URL
    service: str


class Authenticator:
    """The auth state of one client: which scheme the registry wants, and its tokens (in a cache).

    `check_url` is the SSRF policy's URL check; a realm is fetched only if it passes (and the
    transport checks the realm's resolved addresses again at connect).
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        registry: str,
        credentials: Credentials,
        check_url: Callable[[httpx.URL], None],
        cache: TokenCache | None = None,
    ) -> None:
        self.http = http
        self.registry = registry
        self.credentials = credentials
        self.check_url = check_url
        self.cache = cache if cache is not None else SHARED_TOKEN_CACHE
        # Basic is sent preemptively to the registry when there is a password: it is where it belongs.
        self.basic = credentials.username is not None and not credentials.identity_token
        self.bearer: _Bearer | None = None
        self._extra_scopes: dict[tuple[str, ...], tuple[str, ...]] = {}

    def _scopes(self, scopes: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(sorted(set(scopes) | set(self._extra_scopes.get(scopes, ()))))

    def _key(self, bearer: _Bearer, scopes: tuple[str, ...]) -> TokenKey:
        return (self.registry, str(bearer.realm), bearer.service, scopes, self.credentials.fingerprint)

    def _token(self, scopes: tuple[str, ...], repository: str | None, *, fresh: bool = False) -> Token:
        assert self.bearer is not None
        wanted = self._scopes(scopes)
        key = self._key(self.bearer, wanted)
        token = None if fresh else self.cache.get(key)
        if token is None:
            token = fetch_token(
                self.http,
                realm=self.bearer.realm,
                service=self.bearer.service,
                scopes=wanted,
                credentials=self.credentials,
                registry=self.registry,
                repository=repository,
                clock=self.cache.clock,
            )
            self.cache.put(key, token)
        return token

    def header(self, scopes: tuple[str, ...], repository: str | None) -> str | None:
        """The `Authorization` value for a request to the registry needing `scopes`, or None."""
        if self.bearer is not None:
            return "Bearer " + self._token(scopes, repository).value
        if self.basic:
            return self.credentials.basic_header()
        return None

    def on_unauthorized(
        self,
        resp: httpx.Response,
        *,
        sent: str | None,
        scopes: tuple[str, ...],
        state: AuthRound,
        repository: str | None,
        error: tuple[str | None, str] = (None, ""),
    ) -> None:
        """Decide on a 401 from the registry: return to retry the request, raise `UnauthorizedError`."""
        where: dict[str, Any] = {"registry": self.registry, "repository": repository}
        target = f"repository {repository!r}" if repository else "the registry"
        challenges = parse_www_authenticate(resp.headers.get_list("WWW-Authenticate"))
        chosen = select_challenge(challenges)
        code, text = error
        detail = f" ({': '.join(p for p in (code, text) if p)})" if code or text else ""

        def final(message: str) -> UnauthorizedError:
            return UnauthorizedError(f"HTTP 401{detail}: {message}", status=401, code=code, **where)

        if chosen is None:
            schemes = ", ".join(sorted({c.scheme for c in challenges})) or "none"
            if not self.credentials.present:
                raise final("the registry requires credentials and none are configured")
            raise final(f"no supported authentication challenge (schemes offered: {schemes})")
        if chosen.scheme == "basic":
            if not self.credentials.present:
                raise final(
                    "the registry requires credentials and none are configured; add them with "
                    "`manage.py registry add URL --username USER --password-stdin`"
                )
            if self.credentials.identity_token:
                raise final("the registry asks for basic auth, but only an identity token is saved")
            if state.basic or (sent or "").startswith("Basic "):
                raise final(f"credentials for {self.credentials.describe()} rejected")
            self.basic, state.basic = True, True
            return
        try:
            realm = resp.request.url.join(chosen.realm)  # RFC 7235 leaves it opaque; docker resolves it
            realm.host  # noqa: B018 - an IDNA host is decoded only when asked for
        except (httpx.InvalidURL, ValueError):  # IDNA errors are ValueErrors
            raise final("the token realm is not a usable URL") from None
        try:
            self.check_url(realm)
        except PolicyError as exc:
            raise exc.widen() from None  # the realm serves every request's token
        if resp.request.url.scheme == "https" and realm.scheme != "https":
            raise final(f"the token realm {realm.scheme}://{realm.host} is plain HTTP; refused")
        self.bearer = _Bearer(realm=realm, service=chosen.params.get("service", ""))
        sent_token = (sent or "").startswith("Bearer ")
        if not sent_token and not state.token:
            state.token = True
            if chosen.scopes:
                self._extra_scopes[scopes] = chosen.scopes
            self._token(scopes, repository)
            return
        if chosen.error == "insufficient_scope" and not state.scope_retry:
            state.scope_retry = True
            self._extra_scopes[scopes] = tuple(set(self._extra_scopes.get(scopes, ())) | set(chosen.scopes))
            self._token(scopes, repository, fresh=True)
            return
        if chosen.error == "invalid_token" and not state.refreshed:
            state.refreshed = True
            self._token(scopes, repository, fresh=True)
            return
        who = self.credentials.describe()
        raise final(
            f"the token for {who} grants no access to {target}: it does not exist, or {who} may not "
            "read it; check the name and the account's permissions"
            + ("" if self.credentials.present else ", or save credentials for this registry")
        )
