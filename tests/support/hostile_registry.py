"""A small registry on 127.0.0.1 that misbehaves on purpose, for the replies real registries never give.

It speaks enough of the registry HTTP API v2 to be scanned: `/v2/`, `/v2/_catalog` and
`/v2/<name>/tags/list` (with `n`, `last` and a relative `Link`), manifests by tag or digest, blobs.
Content comes from tests/fixtures/manifests, served byte for byte. Repositories and tags:

``good/app``
    ``v1`` a Docker schema 2 image; ``multi`` a two-platform OCI index with its children.
``hostile/app``
    ``good``            a Docker schema 2 image (the good one);
    ``digest-mismatch`` a manifest whose bytes do not hash to its ``Docker-Content-Digest``;
    ``malformed``       a body that is not JSON, served as a Docker schema 2 manifest;
    ``bad-config``      a manifest whose config blob bytes do not hash to the config digest;
    ``error-500``       HTTP 500 with a distribution error body;
    ``schema1``         a signed Docker schema 1 manifest.
``loop/app``
    a tag list whose ``Link: rel="next"`` names the very page just served, forever.

With ``names=True`` the catalog also lists entries that are no repository name (`BAD_NAMES`: 300
characters, a NUL, uppercase, an empty component) beside ``names/ok``. Never in the catalog, always
served (`_abuse_route`): ``abuse/endless`` (a tag list whose ``Link`` goes on for `ENDLESS_TAGS` tags,
each manifest unknown), ``abuse/tags`` (a 300-character tag, a tag with a NUL, and ``v1``), ``abuse/drip``
(a tag list whose body comes a byte every `DRIP_SECONDS`) and ``abuse/header-drip`` (its headers do).

Usage::

    with hostile_registry() as reg:
        snapshot_repository(RegistryClient(reg.base_url, allow_internal=True), "hostile/app")
        reg.requests  # paths asked for, in order

    base_url, stop = start_hostile_registry()
    try: ...
    finally: stop()
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "manifests"

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class _Content:
    """What the server holds: tags per repository, replies per manifest path, blobs (served as-is)."""

    tags: dict[str, list[str]] = field(default_factory=dict)
    manifests: dict[tuple[str, str], Reply] = field(default_factory=dict)  # (repository, tag or digest)
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> bytes served (maybe not matching)
    extra_names: list[str] = field(default_factory=list)  # catalog entries with no content

    def manifest(self, repository: str, tag: str | None, body: bytes, content_type: str) -> str:
        digest = _sha256(body)
        reply = Reply(200, body, {"Content-Type": content_type, "Docker-Content-Digest": digest})
        self.manifests[(repository, digest)] = reply
        if tag is not None:
            self.manifests[(repository, tag)] = reply
            self.tags.setdefault(repository, []).append(tag)
        return digest


def _build_content() -> _Content:
    c = _Content()
    docker_manifest, docker_config = _fixture("docker_v2_manifest.json"), _fixture("docker_v2_config.json")
    c.blobs[_sha256(docker_config)] = docker_config

    c.manifest("good/app", "v1", docker_manifest, DOCKER_V2)
    for arch in ("amd64", "arm64"):
        config = _fixture(f"oci_config_{arch}.json")
        c.blobs[_sha256(config)] = config
        c.manifest("good/app", None, _fixture(f"oci_manifest_{arch}.json"), OCI_MANIFEST)
    c.manifest("good/app", "multi", _fixture("oci_index.json"), OCI_INDEX)

    repo = "hostile/app"
    c.manifest(repo, "good", docker_manifest, DOCKER_V2)

    # A manifest whose bytes do not hash to the digest the registry announces for it.
    doc = json.loads(docker_manifest)
    doc["layers"] = doc["layers"][:1]
    lying = json.dumps(doc, indent=3).encode()
    c.manifests[(repo, "digest-mismatch")] = Reply(
        200, lying, {"Content-Type": DOCKER_V2, "Docker-Content-Digest": _sha256(lying + b"\n")}
    )
    c.tags[repo].append("digest-mismatch")

    c.manifests[(repo, "malformed")] = Reply(
        200,
        b'{"schemaVersion": 2, "mediaType": "' + DOCKER_V2.encode() + b'", "layers": [',
        {"Content-Type": DOCKER_V2},
    )
    c.tags[repo].append("malformed")

    # A manifest naming a config whose served bytes are not the ones its digest names.
    config = json.loads(docker_config)
    config["config"]["Labels"]["variant"] = "bad-config"
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    doc = json.loads(docker_manifest)
    doc["config"].update(digest=_sha256(config_bytes), size=len(config_bytes))
    c.blobs[_sha256(config_bytes)] = config_bytes.replace(b"bad-config", b"tampered!!")
    c.manifest(repo, "bad-config", json.dumps(doc, indent=3).encode(), DOCKER_V2)

    c.manifests[(repo, "error-500")] = Reply(
        500, _error("UNKNOWN", "unknown error"), {"Content-Type": "application/json; charset=utf-8"}
    )
    c.tags[repo].append("error-500")

    c.manifest(repo, "schema1", _fixture("schema1_manifest.json"), SCHEMA1_SIGNED)

    c.tags["loop/app"] = ["v1"]
    return c


def _add_strict_content(c: _Content) -> None:
    """Manifest integrity and limits, served only by `hostile_registry(strict=True)`.

    ``strict/app``: ``good`` (the good image), ``nan`` (a NaN in a manifest), ``duplicate-key``,
    ``nul-created-by`` (an image whose config has NUL and a lone surrogate in its history and labels:
    stored cleaned), ``oversize`` (a 5 MiB manifest), ``self-index`` (an index naming a digest for which
    the server serves the index itself again). ``linkaway/app``: a tag list whose next page is on
    another host.
    """
    repo = "strict/app"
    docker_manifest, docker_config = _fixture("docker_v2_manifest.json"), _fixture("docker_v2_config.json")
    c.manifest(repo, "good", docker_manifest, DOCKER_V2)
    doc = json.loads(docker_manifest)
    nan = re.sub(r'"size": \d+', '"size": NaN', json.dumps(doc, indent=3), count=1)
    c.manifest(repo, "nan", nan.encode(), DOCKER_V2)
    dup = json.dumps(doc, indent=3).replace(
        '"schemaVersion": 2,', '"schemaVersion": 2, "schemaVersion": 2,', 1
    )
    c.manifest(repo, "duplicate-key", dup.encode(), DOCKER_V2)

    config = json.loads(docker_config)
    config["history"][0]["created_by"] = "/bin/sh -c #(nop) ADD file:rootfs\u0000 in /"
    config["config"]["Labels"]["nul"] = "a\u0000b \ud800"
    config_bytes = json.dumps(config).encode()  # json escapes them: \\u0000, \\ud800
    c.blobs[_sha256(config_bytes)] = config_bytes
    nul = json.loads(docker_manifest)
    nul["config"].update(digest=_sha256(config_bytes), size=len(config_bytes))
    c.manifest(repo, "nul-created-by", json.dumps(nul, indent=3).encode(), DOCKER_V2)

    big = json.loads(docker_manifest)
    big["annotations"] = {"padding": "x" * (5 * 1024 * 1024)}
    c.manifest(repo, "oversize", json.dumps(big).encode(), DOCKER_V2)

    fake = "sha256:" + "1" * 64
    entry = {"mediaType": OCI_INDEX, "digest": fake, "size": 0}
    loop = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [entry]})
    loop = loop.replace('"size": 0', f'"size": {len(loop) + 2}')  # the size of this very body
    c.manifest(repo, "self-index", loop.encode(), OCI_INDEX)
    c.manifests[(repo, fake)] = c.manifests[(repo, "self-index")]

    c.manifest("linkaway/app", "v1", docker_manifest, DOCKER_V2)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: don't wait for delayed ACKs
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # keep test output clean

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        if _abuse_route(self):
            return
        reply = _transport_route(self) or self._route()
        self.send_response(reply.status)
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **reply.headers}
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _route(self) -> Reply:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        content = self.server.content
        if path == "/v2/":
            return Reply(200, b"{}")
        if path == "/v2/_catalog":
            return self._page(path, params, "repositories", sorted([*content.tags, *content.extra_names]))
        rest = path.removeprefix("/v2/")
        if rest == "loop/app/tags/list":
            # The hostile part: the next page is this page, again and again.
            return Reply(
                200,
                json.dumps({"name": "loop/app", "tags": ["v1"]}).encode(),
                {"Link": f'<{self.path}>; rel="next"'},
            )
        if rest == "linkaway/app/tags/list":
            # The next page is on another origin: a client must not follow it (nor send credentials).
            return Reply(
                200,
                json.dumps({"name": "linkaway/app", "tags": ["v1"]}).encode(),
                {"Link": '<http://198.51.100.7:5000/v2/linkaway/app/tags/list?n=1&last=v1>; rel="next"'},
            )
        if rest.endswith("/tags/list"):
            name = rest.removesuffix("/tags/list")
            if name not in content.tags:
                return Reply(404, _error("NAME_UNKNOWN", "repository name not known to registry"))
            return self._page(path, params, "tags", sorted(content.tags[name]), {"name": name})
        if "/manifests/" in rest:
            name, ref = rest.rsplit("/manifests/", 1)
            reply = content.manifests.get((name, ref))
            return reply or Reply(404, _error("MANIFEST_UNKNOWN", "manifest unknown"))
        if "/blobs/" in rest:
            _, digest = rest.rsplit("/blobs/", 1)
            blob = content.blobs.get(digest)
            if blob is None:
                return Reply(404, _error("BLOB_UNKNOWN", "blob unknown to registry"))
            return Reply(
                200, blob, {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
            )
        return Reply(404, _error("UNSUPPORTED", "The operation is unsupported."))

    @staticmethod
    def _page(
        path: str, params: dict[str, str], key: str, items: list[str], extra: dict[str, str] | None = None
    ) -> Reply:
        n = int(params.get("n", "100"))
        last = params.get("last")
        page = [i for i in items if last is None or i > last][:n]
        headers = {}
        if page and page[-1] != items[-1]:
            headers["Link"] = f'<{path}?n={n}&last={page[-1]}>; rel="next"'
        return Reply(200, json.dumps({**(extra or {}), key: page}).encode(), headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    content: _Content
    requests: list[str]
    authorization: dict[str, str | None]
    throttled: set[str]


@dataclass
class HostileRegistry:
    """A running hostile registry: its base URL, the paths asked for so far, and how to stop it."""

    base_url: str
    requests: list[str]
    stop: Callable[[], None]
    # path on the redirect-target origin -> the Authorization header it received (None: none)
    authorization: dict[str, str | None] = field(default_factory=dict)


def _start(strict: bool = False, names: bool = False) -> HostileRegistry:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.content = _build_content()
    if strict:
        _add_strict_content(server.content)
    if names:
        server.content.extra_names.extend(BAD_NAMES)
        server.content.manifest("names/ok", "v1", _fixture("docker_v2_manifest.json"), DOCKER_V2)
    server.requests = []
    server.authorization = {}
    server.throttled = set()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="hostile-registry", daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return HostileRegistry(
        base_url=f"http://{host}:{port}",
        requests=server.requests,
        stop=stop,
        authorization=server.authorization,
    )


def start_hostile_registry() -> tuple[str, Callable[[], None]]:
    """Start the server on a free 127.0.0.1 port; return its base URL and a function that stops it."""
    reg = _start()
    return reg.base_url, reg.stop


@contextmanager
def hostile_registry(*, strict: bool = False, names: bool = False) -> Iterator[HostileRegistry]:
    """The server for the duration of a `with` block; `strict` adds the integrity and limits repositories,
    `names` the catalog entries that are no repository name."""
    reg = _start(strict, names)
    try:
        yield reg
    finally:
        reg.stop()


# --- authentication and transport -------------------------------------------------------------------------

SLOW_SECONDS = 2.0
METADATA_REALM = "http://169.254.169.254/latest/api/token"
_TRANSPORT_TAGS = ["v1", "redirected", "throttled", "to-metadata"]


def _transport_route(handler: _Handler) -> Reply | None:
    """Replies for the auth and transport cases; None for every other path. Not in the catalog.

    ``transport/app``
        ``v1`` a good image; ``redirected`` an OCI image whose config blob answers 307 to another
        origin (``http://localhost:PORT/storage/...?X-Amz-Signature=...``, which records the
        ``Authorization`` it got in ``HostileRegistry.authorization``); ``throttled`` 429 with
        ``Retry-After: 1`` the first time, then the image; ``to-metadata`` a 302 to 169.254.169.254.
    ``slow/app``
        ``v1`` whose manifest comes after ``SLOW_SECONDS`` (past a short read timeout).
    ``metadata/app``
        every request 401 with a Bearer challenge whose realm is on the cloud metadata address.
    """
    server = handler.server
    path = urlsplit(handler.path).path
    content = server.content
    if path.startswith("/storage/"):
        server.authorization[path] = handler.headers.get("Authorization")
        blob = content.blobs.get(path.removeprefix("/storage/"))
        return Reply(200, blob, {"Content-Type": "application/octet-stream"}) if blob else None
    rest = path.removeprefix("/v2/")
    repo = next((r for r in ("transport/app", "slow/app", "metadata/app") if rest.startswith(r + "/")), None)
    if repo is None:
        return None
    if repo == "metadata/app":
        challenge = f'Bearer realm="{METADATA_REALM}",service="hostile",scope="repository:{repo}:pull"'
        return Reply(401, _error("UNAUTHORIZED", "authentication required"), {"WWW-Authenticate": challenge})
    kind, _, ref = rest.removeprefix(repo + "/").partition("/")
    if kind == "tags":
        tags = ["v1"] if repo == "slow/app" else _TRANSPORT_TAGS
        return Reply(200, json.dumps({"name": repo, "tags": tags}).encode())
    docker_manifest = _fixture("docker_v2_manifest.json")
    oci_manifest = _fixture("oci_manifest_amd64.json")
    by_ref = {"v1": (docker_manifest, DOCKER_V2), "throttled": (docker_manifest, DOCKER_V2)}
    by_ref["redirected"] = (oci_manifest, OCI_MANIFEST)
    for body, media_type in list(by_ref.values()):
        by_ref[_sha256(body)] = (body, media_type)
    if kind == "manifests":
        if repo == "slow/app":
            time.sleep(SLOW_SECONDS)
        if ref == "to-metadata":
            return Reply(302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
        if ref == "throttled" and ref not in server.throttled:
            server.throttled.add(ref)
            return Reply(429, _error("TOOMANYREQUESTS", "slow down"), {"Retry-After": "1"})
        found = by_ref.get(ref)
        if found is None:
            return Reply(404, _error("MANIFEST_UNKNOWN", "manifest unknown"))
        return Reply(200, found[0], {"Content-Type": found[1], "Docker-Content-Digest": _sha256(found[0])})
    if kind == "blobs":
        redirected_config = json.loads(oci_manifest)["config"]["digest"]
        if ref == redirected_config:
            port = server.server_address[1]
            location = f"http://localhost:{port}/storage/{ref}?X-Amz-Signature=SECRETSIG&X-Amz-Expires=60"
            return Reply(307, b"", {"Location": location})
        blob = content.blobs.get(ref)
        return Reply(200, blob, {"Content-Type": "application/octet-stream"}) if blob else None
    return None


# --- abuse: names, endless and odd tag lists, drips ---------------------------------------------------------

BAD_NAMES = ["x" * 300, "bad\x00name", "Upper/app", "empty//component"]
ENDLESS_TAGS = 1_000_000
DRIP_SECONDS = 0.05
BAD_TAGS = ["a" * 300, "bad\x00tag"]


def _abuse_route(handler: _Handler) -> bool:
    """Serve the ``abuse/*`` repositories (see the module docstring); False for every other path."""
    url = urlsplit(handler.path)
    path = url.path
    if not path.startswith("/v2/abuse/"):
        return False
    params = {k: v[-1] for k, v in parse_qs(url.query).items()}
    if path == "/v2/abuse/endless/tags/list":
        # Tags t0000000, t0000001, ... made up page by page: never held, never ending before ENDLESS_TAGS.
        n = int(params.get("n", "100"))
        start = int(params["last"][1:]) + 1 if "last" in params else 0
        tags = [f"t{i:07d}" for i in range(start, min(start + n, ENDLESS_TAGS))]
        headers = {}
        if tags and start + n < ENDLESS_TAGS:
            headers["Link"] = f'</v2/abuse/endless/tags/list?n={n}&last={tags[-1]}>; rel="next"'
        reply = Reply(200, json.dumps({"name": "abuse/endless", "tags": tags}).encode(), headers)
    elif path == "/v2/abuse/tags/tags/list":
        reply = Reply(200, json.dumps({"name": "abuse/tags", "tags": [*BAD_TAGS, "v1"]}).encode())
    elif path in ("/v2/abuse/drip/tags/list", "/v2/abuse/header-drip/tags/list"):
        _drip(handler, headers_too=path.startswith("/v2/abuse/header-drip/"))
        return True
    elif path == "/v2/abuse/tags/manifests/v1":
        body = _fixture("docker_v2_manifest.json")
        reply = Reply(200, body, {"Content-Type": DOCKER_V2, "Docker-Content-Digest": _sha256(body)})
    elif "/blobs/" in path:
        blob = handler.server.content.blobs.get(path.rsplit("/blobs/", 1)[1])
        reply = Reply(200, blob) if blob else Reply(404, _error("BLOB_UNKNOWN", "blob unknown"))
    else:
        reply = Reply(404, _error("MANIFEST_UNKNOWN", "manifest unknown"))
    handler.send_response(reply.status)
    for key, value in {"Content-Type": "application/json", **reply.headers}.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(reply.body)))
    handler.end_headers()
    handler.wfile.write(reply.body)
    return True


def _drip(handler: _Handler, *, headers_too: bool) -> None:
    """A tag list that trickles in a byte every DRIP_SECONDS (its headers too, if asked), each byte
    well within any read timeout; it stops when the client hangs up."""
    body = json.dumps({"name": "abuse/drip", "tags": ["v1"] * 2000}).encode()
    head = (
        "HTTP/1.1 200 OK\r\n"
        + "".join(f"X-Pad-{i}: {'p' * 40}\r\n" for i in range(300))
        + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    handler.close_connection = True
    try:
        if headers_too:
            for i in range(len(head)):
                handler.wfile.write(head[i : i + 1])
                handler.wfile.flush()
                time.sleep(DRIP_SECONDS)
        else:
            handler.wfile.write(head)
        for i in range(len(body)):
            handler.wfile.write(body[i : i + 1])
            handler.wfile.flush()
            time.sleep(DRIP_SECONDS)
    except OSError:
        pass  # the client gave up, as it should
