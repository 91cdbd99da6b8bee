"""A registry on 127.0.0.1 with a catalog of many repositories, for crawls larger than a real registry
could be filled with in a test (100,000 repositories cost nothing to serve).

Repository `i` is `<prefix><i:06d>` with one tag, `v1`: a Docker schema 2 image whose config is its
own (so every repository brings a new manifest and config to ingest) over one layer shared by all and
one of its own (layers are named, never fetched). Content is made on request from `i` and kept, so a
manifest or config asked for by digest is found. `delay` seconds are spent before each tag list, a
registry farther away than loopback. It speaks `/v2/`, `/v2/_catalog` and tag lists (`n`, `last` and a
relative `Link`), manifests by tag or digest (GET and HEAD) and config blobs.

Usage::

    with catalog_registry(repositories=5000) as reg:
        scan_start(target=reg.url)  # reg.names: the repositories, as the catalog lists them
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SHARED_LAYER = "sha256:" + hashlib.sha256(b"catalog-registry shared layer").hexdigest()


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _error(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


@dataclass
class _Image:
    manifest: bytes
    digest: str
    config: bytes
    config_digest: str


@dataclass
class CatalogRegistry:
    repositories: int
    prefix: str = "crawl/r"
    delay: float = 0.0
    names: list[str] = field(default_factory=list)
    _images: dict[int, _Image] = field(default_factory=dict)
    _by_digest: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.names = [f"{self.prefix}{i:06d}" for i in range(self.repositories)]  # sorted as listed

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def image(self, i: int) -> _Image:
        with self._lock:
            image = self._images.get(i)
            if image is None:
                own = _sha256(f"layer {self.prefix} {i}".encode())
                config = json.dumps(
                    {
                        "architecture": "amd64",
                        "os": "linux",
                        "config": {"Labels": {"repository": self.names[i]}},
                        "rootfs": {"type": "layers", "diff_ids": [SHARED_LAYER, own]},
                        "history": [{"created_by": "ADD base /"}, {"created_by": f"COPY app{i} /app"}],
                    },
                    separators=(",", ":"),
                ).encode()
                manifest = json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": DOCKER_V2,
                        "config": {
                            "mediaType": DOCKER_CONFIG,
                            "size": len(config),
                            "digest": _sha256(config),
                        },
                        "layers": [
                            {"mediaType": DOCKER_LAYER, "size": 2_000_000, "digest": SHARED_LAYER},
                            {"mediaType": DOCKER_LAYER, "size": 1000 + i, "digest": own},
                        ],
                    },
                    indent=3,
                ).encode()
                image = _Image(manifest, _sha256(manifest), config, _sha256(config))
                self._images[i] = image
                self._by_digest[image.digest] = self._by_digest[image.config_digest] = i
            return image

    def index(self, name: str) -> int | None:
        i = bisect.bisect_left(self.names, name)
        return i if i < len(self.names) and self.names[i] == name else None

    def start(self) -> CatalogRegistry:
        registry = self

        class Handler(_Handler):
            pass

        Handler.registry = registry
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="catalog-registry",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    registry: CatalogRegistry

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:
        self._reply(head=False)

    def do_HEAD(self) -> None:
        self._reply(head=True)

    def _reply(self, *, head: bool) -> None:
        status, body, headers = self._route()
        self.send_response(status)
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **headers}
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _route(self) -> tuple[int, bytes, dict[str, str]]:
        reg = self.registry
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/v2/":
            return 200, b"{}", {}
        if path == "/v2/_catalog":
            n = int(params.get("n", "100"))
            start = bisect.bisect_right(reg.names, params["last"]) if "last" in params else 0
            page = reg.names[start : start + n]
            headers = {}
            if start + n < len(reg.names):
                headers["Link"] = f'<{path}?n={n}&last={page[-1]}>; rel="next"'
            return 200, json.dumps({"repositories": page}).encode(), headers
        rest = path.removeprefix("/v2/")
        if rest.endswith("/tags/list"):
            name = rest.removesuffix("/tags/list")
            if reg.index(name) is None:
                return 404, _error("NAME_UNKNOWN", "repository name not known to registry"), {}
            if reg.delay:
                time.sleep(reg.delay)
            return 200, json.dumps({"name": name, "tags": ["v1"]}).encode(), {}
        if "/manifests/" in rest:
            name, ref = rest.rsplit("/manifests/", 1)
            i = reg.index(name)
            if i is not None and (ref == "v1" or reg._by_digest.get(ref) == i):
                image = reg.image(i)
                if ref in ("v1", image.digest):
                    return (
                        200,
                        image.manifest,
                        {"Content-Type": DOCKER_V2, "Docker-Content-Digest": image.digest},
                    )
            return 404, _error("MANIFEST_UNKNOWN", "manifest unknown"), {}
        if "/blobs/" in rest:
            name, digest = rest.rsplit("/blobs/", 1)
            i = reg._by_digest.get(digest)
            if i is not None and reg.names[i] == name and reg.image(i).config_digest == digest:
                config = reg.image(i).config
                return (
                    200,
                    config,
                    {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest},
                )
            return 404, _error("BLOB_UNKNOWN", "blob unknown to registry"), {}
        return 404, _error("UNSUPPORTED", "The operation is unsupported."), {}


@contextmanager
def catalog_registry(
    *, repositories: int, prefix: str = "crawl/r", delay: float = 0.0
) -> Iterator[CatalogRegistry]:
    reg = CatalogRegistry(repositories=repositories, prefix=prefix, delay=delay).start()
    try:
        yield reg
    finally:
        reg.stop()
