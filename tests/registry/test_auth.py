"""Authentication: challenge parsing (RFC 7235), the token flow and its cache, through httpx.MockTransport."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.registry.fakes import FakeRegistry
from workers.registry import ForbiddenError, HTTPStatusError, RegistryClient, UnauthorizedError
from workers.registry.auth import (
    Challenge,
    Credentials,
    TokenCache,
    parse_token_reply,
    parse_www_authenticate,
    select_challenge,
)

REALM = "https://auth.example.test/token"


# -- challenge parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        # Docker Hub's own challenge.
        (
            ['Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
             'scope="repository:library/alpine:pull"'],
            [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                         "scope": "repository:library/alpine:pull"})],
        ),
        # Two challenges in one header; the quoted realm holds a comma.
        (
            ['Basic realm="a, b", Bearer realm="https://r/t",service=s'],
            [("basic", {"realm": "a, b"}), ("bearer", {"realm": "https://r/t", "service": "s"})],
        ),
        # Backslash escapes inside a quoted string; spaces around "="; upper-case scheme and names.
        (
            ['BEARER Realm = "https://r/\\"q\\"\\\\x" , Error="insufficient_scope"'],
            [("bearer", {"realm": 'https://r/"q"\\x', "error": "insufficient_scope"})],
        ),
        # Several headers; a token68 scheme between them; empty list elements.
        (
            ["Negotiate abc+/==", ',, Basic realm="x",,', "Bearer realm=https://r/t"],
            [("negotiate", {}), ("basic", {"realm": "x"}), ("bearer", {"realm": "https://r/t"})],
        ),
        # A scope with several entries separated by spaces.
        (
            ['Bearer realm="/t",scope="repository:a:pull repository:b:pull"'],
            [("bearer", {"realm": "/t", "scope": "repository:a:pull repository:b:pull"})],
        ),
        # A parameter given twice: the first wins; an unterminated quote takes the rest.
        (
            ['Bearer realm="r1",realm="r2",service="svc'],
            [("bearer", {"realm": "r1", "service": "svc"})],
        ),
        # A scheme with no parameters, then garbage.
        (["Basic", "@@@"], [("basic", {})]),
    ],
)  # fmt: skip
def test_www_authenticate_parsing(headers: list[str], expected: list[tuple[str, dict[str, str]]]) -> None:
    got = [(c.scheme, c.params) for c in parse_www_authenticate(headers)]
    assert got == expected


def test_token68_is_kept_apart_from_params() -> None:
    (c,) = parse_www_authenticate(["Negotiate abc+/=="])
    assert c.token68 == "abc+/==" and c.params == {}
    first, second = parse_www_authenticate(['Negotiate abc==, Basic realm="r"'])
    assert (first.token68, first.params, second.params) == ("abc==", {}, {"realm": "r"})


def test_bearer_is_preferred_over_basic_whatever_the_order() -> None:
    chosen = select_challenge(parse_www_authenticate(['Basic realm="x", Bearer realm="https://r/t"']))
    assert chosen is not None and chosen.scheme == "bearer"
    assert select_challenge([Challenge("bearer"), Challenge("basic")]) == Challenge("basic")  # no realm
    assert select_challenge([Challenge("negotiate")]) is None


# -- token replies and the cache ---------------------------------------------------------------


def test_token_reply_takes_access_token_or_token_and_at_least_60_seconds() -> None:
    assert parse_token_reply(b'{"token": "t", "expires_in": 300}', now=0).expires_at == 300
    assert parse_token_reply(b'{"access_token": "a", "token": "t"}', now=10).value == "a"
    assert parse_token_reply(b'{"token": "t"}', now=10).expires_at == 70  # default 60 s
    assert parse_token_reply(b'{"token": "t", "expires_in": 5}', now=0).expires_at == 60  # minimum
    with pytest.raises(ValueError):
        parse_token_reply(b'{"expires_in": 5}', now=0)


def test_token_cache_refreshes_thirty_seconds_before_expiry() -> None:
    now = [1000.0]
    cache = TokenCache(clock=lambda: now[0])
    key = ("r", "realm", "svc", ("repository:a:pull",), "cred")
    cache.put(key, parse_token_reply(b'{"token": "t", "expires_in": 100}', now=now[0]))
    now[0] += 69
    assert cache.get(key) is not None
    now[0] += 1  # 30 s before expiry: no longer handed out
    assert cache.get(key) is None


def test_credentials_repr_and_fingerprint_hide_the_secret() -> None:
    creds = Credentials(username="alice", password="s3cret-value")
    assert "s3cret-value" not in repr(creds) and "s3cret-value" not in creds.fingerprint
    assert creds.fingerprint != Credentials(username="alice", password="other").fingerprint


# -- the token flow against a fake registry and token server ----------------------------------


class TokenFlow:
    """A FakeRegistry behind bearer auth, with a token server on another origin (auth.example.test)."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        post: int | None = None,
        get: int | None = None,
        grant: bool = True,
    ) -> None:
        self.registry = FakeRegistry()
        self.registry.add_docker_image("team/app", "v1")
        self.users = users or {}
        self.post = post  # a status to answer every POST with, instead of serving it
        self.get = get  # the same for GET
        self.grant = grant
        self.token_requests: list[httpx.Request] = []
        self.issued = 0
        self.reject_next: str | None = None  # a 401 `error` to answer the next registry request with
        self.expires_in = 300
        inner = self.registry.handle

        def handle(request: httpx.Request) -> httpx.Response:
            if request.url.host == "auth.example.test":
                return self.token(request)
            auth = request.headers.get("Authorization", "")
            scope = "repository:team/app:pull"
            challenge = f'Bearer realm="{REALM}",service="reg.test",scope="{scope}"'
            if self.reject_next:
                error, self.reject_next = self.reject_next, None
                return httpx.Response(401, headers={"WWW-Authenticate": challenge + f',error="{error}"'})
            if not auth.startswith("Bearer tok-"):
                return httpx.Response(401, headers={"WWW-Authenticate": challenge})
            if not self.grant and request.url.path != "/v2/":
                return httpx.Response(
                    401, headers={"WWW-Authenticate": challenge + ',error="insufficient_scope"'}
                )
            return inner(request)

        self.handle = handle

    def token(self, request: httpx.Request) -> httpx.Response:
        self.token_requests.append(request)
        if request.method == "POST":
            if self.post is not None:
                return httpx.Response(self.post)
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            user, password = form.get("username"), form.get("password")
            if form.get("grant_type") == "refresh_token":
                user, password = "<token>", form.get("refresh_token")
        else:
            if self.get is not None:
                return httpx.Response(self.get)
            auth = request.headers.get("Authorization", "")
            user = password = None
            if auth.startswith("Basic "):
                user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        if user is not None and self.users.get(user) != password:
            return httpx.Response(401, json={"details": "bad credentials"})
        self.issued += 1
        return httpx.Response(200, json={"access_token": f"tok-{self.issued}", "expires_in": self.expires_in})

    def make(self, **kwargs: Any) -> RegistryClient:
        kwargs.setdefault("sleep", lambda _s: None)
        kwargs.setdefault("token_cache", TokenCache())
        return RegistryClient(
            self.registry.base_url,
            transport=httpx.MockTransport(self.handle),
            allow_plain_http=True,
            **kwargs,
        )


def test_anonymous_token_with_the_repository_pull_scope() -> None:
    flow = TokenFlow()
    with flow.make() as client:
        fetched = client.get_manifest("team/app", "v1")
    assert fetched.digest.startswith("sha256:")
    (req,) = flow.token_requests
    assert req.method == "GET" and "Authorization" not in req.headers
    assert req.url.params.get_list("scope") == ["repository:team/app:pull"]
    assert req.url.params["service"] == "reg.test"


BASIC_ALICE = "Basic " + base64.b64encode(b"alice:pw").decode()


def test_password_token_uses_get_with_basic_credentials_and_is_reused_from_the_cache() -> None:
    # As `docker login`: the classic GET with the password; the OAuth2 POST only for identity tokens.
    flow = TokenFlow(users={"alice": "pw"})
    with flow.make(username="alice", password="pw") as client:
        client.get_manifest("team/app", "v1")
        client.get_manifest("team/app", "v1")
    (req,) = flow.token_requests  # one token for both requests
    assert req.method == "GET" and req.headers["Authorization"] == BASIC_ALICE
    assert req.url.params.get_list("scope") == ["repository:team/app:pull"]
    assert req.url.params["service"] == "reg.test" and req.url.params["account"] == "alice"
    assert all(r.headers.get("Authorization", "").startswith("Bearer ") for r in flow.registry.requests[1:])


@pytest.mark.parametrize("status", [501, 404, 405, 400])
def test_password_is_never_posted_when_the_get_works(status: int) -> None:
    flow = TokenFlow(users={"alice": "pw"}, post=status)
    with flow.make(username="alice", password="pw") as client:
        client.get_manifest("team/app", "v1")
    assert [r.method for r in flow.token_requests] == ["GET"]


@pytest.mark.parametrize("status", [404, 405, 501, 400])
def test_get_refused_by_an_oauth2_only_realm_falls_back_to_the_password_post(status: int) -> None:
    flow = TokenFlow(users={"alice": "pw"}, get=status)
    with flow.make(username="alice", password="pw") as client:
        client.get_manifest("team/app", "v1")
    assert [r.method for r in flow.token_requests] == ["GET", "POST"]
    form = parse_qs(flow.token_requests[1].content.decode())
    assert form["grant_type"] == ["password"] and form["username"] == ["alice"]
    assert form["scope"] == ["repository:team/app:pull"] and form["service"] == ["reg.test"]


def test_identity_token_is_sent_as_an_oauth2_refresh_token() -> None:
    flow = TokenFlow(users={"<token>": "refresh-me"})
    with flow.make(identity_token="refresh-me") as client:
        client.get_manifest("team/app", "v1")
    (req,) = flow.token_requests
    form = parse_qs(req.content.decode())
    assert req.method == "POST" and "Authorization" not in req.headers
    assert form["grant_type"] == ["refresh_token"] and form["refresh_token"] == ["refresh-me"]


@pytest.mark.parametrize("status", [501, 404, 405, 400])
def test_identity_token_post_not_served_falls_back_to_one_anonymous_get(status: int) -> None:
    flow = TokenFlow(post=status)
    with flow.make(identity_token="refresh-me") as client:
        client.get_manifest("team/app", "v1")
    assert [r.method for r in flow.token_requests] == ["POST", "GET"]
    get = flow.token_requests[1]
    assert "Authorization" not in get.headers and "refresh-me" not in str(get.url)


def test_identity_token_post_failing_for_now_is_not_replaced_by_an_anonymous_token() -> None:
    flow = TokenFlow(post=503)
    with flow.make(identity_token="refresh-me") as client, pytest.raises(HTTPStatusError) as info:
        client.get_manifest("team/app", "v1")
    assert info.value.transient and "try again later" in str(info.value)
    assert {r.method for r in flow.token_requests} == {"POST"}


def test_identity_token_refused_is_final() -> None:
    flow = TokenFlow(users={"<token>": "other"})
    with flow.make(identity_token="refresh-me") as client, pytest.raises(UnauthorizedError) as info:
        client.get_manifest("team/app", "v1")
    assert [r.method for r in flow.token_requests] == ["POST"]
    assert "refused the identity token" in str(info.value) and "refresh-me" not in str(info.value)


@pytest.mark.parametrize("post", [None, 501])
def test_wrong_password_is_a_clear_final_401(post: int | None) -> None:
    flow = TokenFlow(users={"alice": "pw"}, post=post)
    with flow.make(username="alice", password="nope") as client, pytest.raises(UnauthorizedError) as info:
        client.get_manifest("team/app", "v1")
    message = str(info.value)
    assert "token server https://auth.example.test/token refused user 'alice'" in message
    assert "check the user name and password" in message
    assert "team/app:v1" in message and not info.value.transient and "nope" not in message
    assert [r.method for r in flow.token_requests] == ["GET"]  # a refused password is not tried again


def test_insufficient_scope_gets_one_more_token_then_stops() -> None:
    flow = TokenFlow(grant=False)
    with flow.make() as client, pytest.raises(UnauthorizedError) as info:
        client.get_manifest("team/app", "v1")
    assert len(flow.token_requests) == 2  # the first token, and one retry with the challenge's scope
    assert "grants no access to repository 'team/app'" in str(info.value)


def test_invalid_token_is_refreshed_once() -> None:
    flow = TokenFlow()
    with flow.make() as client:
        client.get_manifest("team/app", "v1")
        flow.reject_next = "invalid_token"
        client.get_manifest("team/app", "v1")
    assert flow.issued == 2
    assert flow.registry.requests[-1].headers["Authorization"] == "Bearer tok-2"


def test_catalog_asks_for_the_catalog_scope_and_ping_for_none() -> None:
    flow = TokenFlow()
    with flow.make() as client:
        client.ping()
        list(client.iter_repositories())
    scopes = [r.url.params.get_list("scope") for r in flow.token_requests]
    # ping takes the challenge's scope; the catalog asks for its own; never an empty `scope=`.
    assert scopes == [["repository:team/app:pull"], ["registry:catalog:*"]]


def test_relative_realm_is_resolved_against_the_request_url() -> None:
    reg = FakeRegistry()
    reg.add_docker_image("team/app", "v1")
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            seen.append(str(request.url.copy_with(query=None)))
            return httpx.Response(200, json={"token": "tok-1"})
        if request.headers.get("Authorization") != "Bearer tok-1":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="/auth/token"'})
        return reg.handle(request)

    with RegistryClient(
        reg.base_url, transport=httpx.MockTransport(handle), token_cache=TokenCache(), allow_plain_http=True
    ) as client:
        client.get_manifest("team/app", "v1")
    assert seen == [f"{reg.base_url}/auth/token"]


def test_expired_token_is_fetched_again() -> None:
    now = [0.0]
    flow = TokenFlow()
    flow.expires_in = 60
    with flow.make(token_cache=TokenCache(clock=lambda: now[0])) as client:
        client.get_manifest("team/app", "v1")
        now[0] += 31  # inside the 30 s refresh margin of a 60 s token
        client.get_manifest("team/app", "v1")
    assert flow.issued == 2


def test_403_is_final_with_a_clear_message() -> None:
    reg = FakeRegistry()
    reg.routes["/v2/team/app/tags/list"] = lambda r: httpx.Response(
        403, content=json.dumps({"errors": [{"code": "DENIED", "message": "requested access denied"}]})
    )
    with reg.client(username="bob", password="pw") as client, pytest.raises(ForbiddenError) as info:
        list(client.iter_tags("team/app"))
    assert len(reg.requests) == 1  # not retried
    assert "access to repository 'team/app' is denied for user 'bob'" in str(info.value)
