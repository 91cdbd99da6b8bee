"""A registry on 127.0.0.1 with a catalog of many repositories, for crawls larger than a real registry
could be filled with in a test (100,000 repositories cost nothing to serve); with `hostile=True`, hostile
repositories and names listed beside them.

Repository `i` is `<prefix><i:06d>` with one tag, `v1`: a Docker schema 2 image whose config is its
own (so every repository brings a new manifest and config to ingest) over one layer shared by all and
one of its own (layers are named, never fetched). Content is made on request from `i` and kept, so a
manifest or config asked for by digest is found. `delay` seconds are spent before each tag list, a
registry farther away than loopback. It speaks `/v2/`, `/v2/_catalog` and tag lists (`n`, `last` and a
relative `Link`), manifests by tag or digest (GET and HEAD) and config blobs.

With `hostile=True` the catalog also lists (`reg.listed`, sorted with the rest; every reply made on
request, nothing large held but one 4 MiB manifest):

``abuse/endless``
    a tag list of `ENDLESS_TAGS` (1,000,000) tags, `t0000000`..., paged by `n`, `last` and `Link`; each
    tag names the same small image.
``abuse/layers``
    tag `wide`: an image manifest of `WIDE_LAYERS` (25,000) layers, under the 4 MiB manifest limit;
    tag `at-cap`: one of `AT_CAP_LAYERS` (1,024) layers. Their configs list as many diff_ids.
``abuse/drip-tags``, ``abuse/drip-manifest``
    a tag list, or the manifest of its one tag `v1`, whose body comes `DRIP_BYTES` bytes every
    `DRIP_EVERY` seconds (4 bytes a second): complete only after hours.
`INVALID_NAMES`
    catalog entries the distribution grammar refuses: 300 characters, a NUL, uppercase, an empty
    component, `..`, a space, non-ASCII, the empty string. Nothing is served for them.

Usage::

    with catalog_registry(repositories=5000) as reg:
        scan_start(target=reg.url)  # reg.names: the ordinary repositories, in catalog order
"""

from __future__ import annotations

import bisect
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, quote, urlsplit

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
SHARED_LAYER = "sha256:" + hashlib.sha256(b"catalog-registry shared layer").hexdigest()

ENDLESS = "abuse/endless"
ENDLESS_TAGS = 1_000_000
LAYERS = "abuse/layers"
WIDE_LAYERS = 25_000
AT_CAP_LAYERS = 1024
DRIP_TAGS = "abuse/drip-tags"
DRIP_MANIFEST = "abuse/drip-manifest"
DRIP_BYTES, DRIP_EVERY = 2, 0.5
HOSTILE_REPOSITORIES = (ENDLESS, LAYERS, DRIP_TAGS, DRIP_MANIFEST)
INVALID_NAMES = (
    "abuse/" + "n" * 294,  # 300 characters, each one allowed
    "abuse/nul\x00name",
    "\x00",
    "Abuse/Upper",
    "abuse//empty",
    "abuse/../escape",
    "abuse/with space",
    "abuse/ünïcode",
    "abuse/trailing/",
    "",
)
MAX_CATALOG_PAGE = 1000  # distribution's default `catalog.maxentries`


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
    hostile: bool = False
    names: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)
    _images: dict[int, _Image] = field(default_factory=dict)
    _by_digest: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _hostile: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # name -> (body, media type)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _asked: Counter[tuple[str, str]] = field(default_factory=Counter)  # (hostile name, "tags"...) -> GETs
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        self.names = [f"{self.prefix}{i:06d}" for i in range(self.repositories)]  # sorted as listed
        extra = [*HOSTILE_REPOSITORIES, *INVALID_NAMES] if self.hostile else []
        self.listed = sorted([*self.names, *extra]) if extra else self.names

    def asked(self, name: str, kind: str) -> int:
        """Requests served so far for the hostile repository `name`: `kind` is "tags", "manifests" or
        "blobs"."""
        with self._lock:
            return self._asked[(name, kind)]

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

    def hostile_blob(self, key: str) -> tuple[bytes, str]:
        """A hostile repository's manifest or config (`endless`, `wide`, `at-cap`; `<key> config`),
        made once: its bytes and media type; kept by key and by digest."""
        with self._lock:
            found = self._hostile.get(key)
        if found is not None:
            return found
        base = key.removesuffix(" config")
        layers = {"endless": 1, "wide": WIDE_LAYERS, "at-cap": AT_CAP_LAYERS, "drip": 1}[base]
        digests = [_sha256(f"{base} layer {k}".encode()) for k in range(layers)]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": digests},
            },
            separators=(",", ":"),
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_V2,
                "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": _sha256(config)},
                "layers": [
                    {"mediaType": DOCKER_LAYER, "size": 1000 + k, "digest": d} for k, d in enumerate(digests)
                ],
            },
            separators=(",", ":"),
        ).encode()
        with self._lock:
            for k, body, media_type in (
                (base, manifest, DOCKER_V2),
                (f"{base} config", config, "application/octet-stream"),
            ):
                self._hostile[k] = self._hostile[_sha256(body)] = (body, media_type)
            return self._hostile[key]

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
        self._stopping.set()  # the drips end
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
        if status < 0:
            return  # replied already (a drip)
        self.send_response(status)
        headers = {"Docker-Distribution-API-Version": "registry/2.0", **headers}
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _hostile_route(self, rest: str, params: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        reg = self.registry
        for kind, marker in (("tags", "/tags/list"), ("manifests", "/manifests/"), ("blobs", "/blobs/")):
            if marker in rest:
                with reg._lock:
                    reg._asked[(rest.split(marker, 1)[0], kind)] += 1
                break
        if rest == f"{ENDLESS}/tags/list":
            # Tags t0000000, t0000001, ... made page by page: never held, never ending before ENDLESS_TAGS.
            n = min(int(params.get("n", "100")), MAX_CATALOG_PAGE)
            last = params.get("last", "")
            start = int(last[1:]) + 1 if last[1:].isdigit() else 0
            tags = [f"t{i:07d}" for i in range(start, min(start + n, ENDLESS_TAGS))]
            headers = {}
            if tags and start + n < ENDLESS_TAGS:
                headers["Link"] = f'</v2/{ENDLESS}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
            return 200, json.dumps({"name": ENDLESS, "tags": tags}).encode(), headers
        if rest == f"{LAYERS}/tags/list":
            return 200, json.dumps({"name": LAYERS, "tags": ["at-cap", "wide"]}).encode(), {}
        if rest == f"{DRIP_MANIFEST}/tags/list":
            return 200, json.dumps({"name": DRIP_MANIFEST, "tags": ["v1"]}).encode(), {}
        if rest == f"{DRIP_TAGS}/tags/list":
            self._drip(json.dumps({"name": DRIP_TAGS, "tags": [f"v{i}" for i in range(2000)]}).encode())
            return -1, b"", {}
        if rest == f"{DRIP_MANIFEST}/manifests/v1":
            self._drip(reg.hostile_blob("drip")[0], DOCKER_V2)
            return -1, b"", {}
        name, kind, ref = "", "", ""
        for kind in ("manifests", "blobs"):
            if f"/{kind}/" in rest:
                name, ref = rest.rsplit(f"/{kind}/", 1)
                break
        key = None
        if kind == "manifests" and name == ENDLESS and ref.startswith("t") and ref[1:].isdigit():
            key = "endless"
        elif kind == "manifests" and name == LAYERS and ref in ("wide", "at-cap"):
            key = ref
        elif kind in ("manifests", "blobs") and name in (ENDLESS, LAYERS, DRIP_MANIFEST):
            with reg._lock:
                found = reg._hostile.get(ref)
            if found is not None:
                body, media_type = found
                return 200, body, {"Content-Type": media_type, "Docker-Content-Digest": ref}
        if key is not None:
            body, media_type = reg.hostile_blob(key)
            return 200, body, {"Content-Type": media_type, "Docker-Content-Digest": _sha256(body)}
        return 404, _error("NAME_UNKNOWN", "repository name not known to registry"), {}

    def _drip(self, body: bytes, content_type: str = "application/json") -> None:
        """Send `body` DRIP_BYTES at a time every DRIP_EVERY seconds, until it ends, the client hangs up
        or the server stops; the headers come at once, promising all of it."""
        self.close_connection = True
        self.send_response(200)
        self.send_header("Docker-Distribution-API-Version", "registry/2.0")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD":
            return
        try:
            for i in range(0, len(body), DRIP_BYTES):
                if self.registry._stopping.wait(DRIP_EVERY):
                    return
                self.wfile.write(body[i : i + DRIP_BYTES])
                self.wfile.flush()
        except OSError:
            pass  # the client gave up, as it should

    def _route(self) -> tuple[int, bytes, dict[str, str]]:
        reg = self.registry
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/v2/":
            return 200, b"{}", {}
        if path == "/v2/_catalog":
            n = min(int(params.get("n", "100")), MAX_CATALOG_PAGE)
            start = bisect.bisect_right(reg.listed, params["last"]) if "last" in params else 0
            page = reg.listed[start : start + n]
            headers = {}
            if start + n < len(reg.listed):
                headers["Link"] = f'<{path}?n={n}&last={quote(page[-1], safe="")}>; rel="next"'
            return 200, json.dumps({"repositories": page}).encode(), headers
        rest = path.removeprefix("/v2/")
        if reg.hostile and rest.startswith("abuse/"):
            return self._hostile_route(rest, params)
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
    *, repositories: int, prefix: str = "crawl/r", delay: float = 0.0, hostile: bool = False
) -> Iterator[CatalogRegistry]:
    reg = CatalogRegistry(repositories=repositories, prefix=prefix, delay=delay, hostile=hostile).start()
    try:
        yield reg
    finally:
        reg.stop()
