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

Usage::

    with hostile_registry() as reg:
        RegistryClient(reg.base_url).snapshot_repository("hostile/app")
        reg.requests  # paths asked for, in order

    base_url, stop = start_hostile_registry()
    try: ...
    finally: stop()
"""

from __future__ import annotations

import hashlib
import json
import threading
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: don't wait for delayed ACKs
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # keep test output clean

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        reply = self._route()
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
            return self._page(path, params, "repositories", sorted(content.tags))
        rest = path.removeprefix("/v2/")
        if rest == "loop/app/tags/list":
            # The hostile part: the next page is this page, again and again.
            return Reply(
                200,
                json.dumps({"name": "loop/app", "tags": ["v1"]}).encode(),
                {"Link": f'<{self.path}>; rel="next"'},
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


@dataclass
class HostileRegistry:
    """A running hostile registry: its base URL, the paths asked for so far, and how to stop it."""

    base_url: str
    requests: list[str]
    stop: Callable[[], None]


def _start() -> HostileRegistry:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.content = _build_content()
    server.requests = []
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="hostile-registry", daemon=True
    )
    thread.start()
    host, port = server.server_address[:2]

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return HostileRegistry(base_url=f"http://{host}:{port}", requests=server.requests, stop=stop)


def start_hostile_registry() -> tuple[str, Callable[[], None]]:
    """Start the server on a free 127.0.0.1 port; return its base URL and a function that stops it."""
    reg = _start()
    return reg.base_url, reg.stop


@contextmanager
def hostile_registry() -> Iterator[HostileRegistry]:
    """The server for the duration of a `with` block."""
    reg = _start()
    try:
        yield reg
    finally:
        reg.stop()
