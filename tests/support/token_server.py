"""A token server for a real registry's token auth (distribution `docs/spec/auth/token.md`), on 127.0.0.1.

It signs JWTs with an ES256 key generated at start, and writes a self-signed certificate for that key:
the registry's `auth.token.rootcertbundle`. Tokens carry the certificate in their `x5c` header, which
distribution 2.8 verifies against that bundle (`registry/auth/token/token.go`), so the registry itself
checks every token, not this code.

Usage::

    with TokenServer(users={"scanner": "pw"}, grants={"scanner": {"private/web"}}) as tokens:
        RegistryServer(token_auth=tokens)

Both the classic GET (basic credentials) and the OAuth2 POST (`grant_type=password`, or
`refresh_token` with one of `identity_tokens`) are answered; `post` (settable while running) changes
that: "serve" (both), "not-implemented" (a POST gets 501, as some token servers do), "only" (a GET gets
405: a realm that speaks only OAuth2).
Valid credentials get the `pull` and `push` asked for on the repositories `grants` lists for the
user (and the catalog);
anonymous requests and users without grants get a token that grants nothing, as Docker Hub does for
a private repository. Wrong credentials get 401. `requests` records (method, grant or "basic", user),
also for the requests `post` turns away.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

ISSUER = "layerlens-test-issuer"
SERVICE = "layerlens-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenServer:
    """A running token server; `realm`, `service`, `issuer` and `cert_path` configure the registry."""

    def __init__(
        self,
        *,
        users: dict[str, str],
        grants: dict[str, set[str]],
        workdir: Path,
        expires_in: int = 300,
        identity_tokens: dict[str, str] | None = None,
        post: str = "serve",
    ) -> None:
        self.users = users
        self.grants = grants
        self.identity_tokens = identity_tokens or {}  # refresh token -> the user it stands for
        self.expires_in = expires_in
        self.post = post
        self.requests: list[tuple[str, str, str | None]] = []
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_path = workdir / "token-root.pem"
        self.cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.service = SERVICE
        self.issuer = ISSUER
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def realm(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/token"

    # -- tokens ----------------------------------------------------------------------------------

    def issue(self, user: str | None, scopes: list[str]) -> str:
        """A signed JWT granting `user` what `grants` allows among `scopes`."""
        allowed = self.grants.get(user or "", set())
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if a in ("pull", "push")]
            if kind == "repository" and name in allowed and granted:
                access.append({"type": "repository", "name": name, "actions": granted})
            elif kind == "registry" and name == "catalog" and user in self.grants:
                access.append({"type": "registry", "name": "catalog", "actions": ["*"]})
        now = int(time.time())
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        r, s = decode_dss_signature(self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS ES256: raw r || s (RFC 7518 3.4)
        return f"{signing_input}.{_b64(signature)}"

    # -- HTTP ------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _reply(self, status: int, doc: dict[str, object]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _answer(self, user: str | None, password: str | None, scopes: list[str], kind: str) -> None:
                server.requests.append((self.command, kind, user))
                if user is not None and server.users.get(user) != password:
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                    return
                token = server.issue(user, scopes)
                key = "access_token" if self.command == "POST" else "token"
                self._reply(200, {key: token, "expires_in": server.expires_in})

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path != "/token":
                    self._reply(404, {})
                    return
                params = parse_qs(url.query)
                user = password = None
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                kind = "basic" if user else "anonymous"
                if server.post == "only":
                    server.requests.append((self.command, kind, user))
                    self._reply(405, {"error": "method not allowed"})
                    return
                self._answer(user, password, params.get("scope", []), kind)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                grant = form.get("grant_type", "")
                if server.post == "not-implemented":
                    server.requests.append((self.command, grant, form.get("username")))
                    self._reply(501, {"error": "not implemented"})
                    return
                if urlsplit(self.path).path != "/token" or grant not in ("password", "refresh_token"):
                    self._reply(400, {"error": "unsupported_grant_type"})
                    return
                scopes = form.get("scope", "").split()
                if grant == "refresh_token":
                    user = server.identity_tokens.get(form.get("refresh_token", ""))
                    if user is None:
                        server.requests.append((self.command, grant, None))
                        self._reply(401, {"error": "invalid_grant"})
                        return
                    self._answer(user, server.users.get(user), scopes, grant)
                    return
                self._answer(form.get("username"), form.get("password"), scopes, grant)

        return Handler

    def start(self) -> TokenServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
