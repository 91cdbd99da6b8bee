"""An in-memory registry behind `httpx.MockTransport`, serving the files in tests/fixtures/manifests.

It speaks just enough of the distribution API (`/v2/`, `_catalog`, `tags/list` with `n`/`last` and
`Link`, manifests by tag or digest, blobs) for the client; `routes` overrides any path with a
function, so a test can serve one odd reply while the rest stays well behaved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from workers.registry import RegistryClient

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "manifests"
BASE_URL = "http://registry.test:5000"

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def fixture(name: str) -> bytes:
    """The bytes of a fixture file, exactly as they are served."""
    return (FIXTURES / name).read_bytes()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error_body(code: str, message: str) -> bytes:
    """A distribution-spec error body ("Error Codes")."""
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


Route = Callable[[httpx.Request], httpx.Response]


class FakeRegistry:
    """A registry in memory. `requests` logs every request the client made, in order."""

    def __init__(self, base_url: str = BASE_URL, *, max_page_size: int = 1000) -> None:
        self.base_url = base_url
        self.max_page_size = max_page_size
        self.tags: dict[str, dict[str, str]] = {}  # repository -> tag -> digest
        self.manifests: dict[str, tuple[bytes, str]] = {}  # digest -> (bytes, Content-Type)
        self.blobs: dict[str, bytes] = {}
        self.routes: dict[str, Route] = {}  # path -> handler, checked first
        self.requests: list[httpx.Request] = []

    # -- content ---------------------------------------------------------------------------------

    def add_blob(self, data: bytes) -> str:
        digest = sha256(data)
        self.blobs[digest] = data
        return digest

    def add_manifest(self, repository: str, tag: str | None, data: bytes, content_type: str) -> str:
        digest = sha256(data)
        self.manifests[digest] = (data, content_type)
        self.tags.setdefault(repository, {})
        if tag is not None:
            self.tags[repository][tag] = digest
        return digest

    def add_docker_image(self, repository: str, *tags: str) -> str:
        """The docker schema 2 fixture (manifest + config) under each of `tags`; returns its digest."""
        self.add_blob(fixture("docker_v2_config.json"))
        digest = ""
        for tag in tags:
            digest = self.add_manifest(repository, tag, fixture("docker_v2_manifest.json"), DOCKER_V2)
        return digest

    def add_oci_index(self, repository: str, *tags: str) -> str:
        """The two-platform OCI index fixture with its children and configs; returns the index digest."""
        for arch in ("amd64", "arm64"):
            self.add_blob(fixture(f"oci_config_{arch}.json"))
            self.add_manifest(repository, None, fixture(f"oci_manifest_{arch}.json"), OCI_MANIFEST)
        digest = ""
        for tag in tags:
            digest = self.add_manifest(repository, tag, fixture("oci_index.json"), OCI_INDEX)
        return digest

    # -- client ----------------------------------------------------------------------------------

    def client(self, **kwargs: Any) -> RegistryClient:
        kwargs.setdefault("sleep", lambda _seconds: None)  # retries happen, without the waiting
        kwargs.setdefault("allow_plain_http", True)  # the fake registry answers on http://registry.test
        return RegistryClient(self.base_url, transport=httpx.MockTransport(self.handle), **kwargs)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]

    # -- HTTP ------------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = request.url.path
        if path in self.routes:
            return self.routes[path](request)
        if path == "/v2/":
            return httpx.Response(200, json={}, headers={"Docker-Distribution-API-Version": "registry/2.0"})
        if path == "/v2/_catalog":
            return self._page(request, sorted(self.tags), "repositories", {})
        rest = path.removeprefix("/v2/")
        if rest.endswith("/tags/list"):
            name = rest.removesuffix("/tags/list")
            if name not in self.tags:
                return httpx.Response(404, content=error_body("NAME_UNKNOWN", "repository name not known"))
            return self._page(request, sorted(self.tags[name]), "tags", {"name": name})
        if "/manifests/" in rest:
            name, ref = rest.rsplit("/manifests/", 1)
            if name not in self.tags:
                return httpx.Response(404, content=error_body("NAME_UNKNOWN", "repository name not known"))
            digest = ref if ":" in ref else self.tags[name].get(ref)
            if digest is None or digest not in self.manifests:
                return httpx.Response(404, content=error_body("MANIFEST_UNKNOWN", "manifest unknown"))
            data, content_type = self.manifests[digest]
            headers = {"Content-Type": content_type, "Docker-Content-Digest": digest}
            return httpx.Response(200, content=data, headers=headers)
        if "/blobs/" in rest:
            _, digest = rest.rsplit("/blobs/", 1)
            if digest not in self.blobs:
                return httpx.Response(404, content=error_body("BLOB_UNKNOWN", "blob unknown to registry"))
            return httpx.Response(200, content=self.blobs[digest], headers={"Docker-Content-Digest": digest})
        return httpx.Response(404, content=error_body("UNSUPPORTED", "not here"))

    def _page(
        self, request: httpx.Request, items: list[str], key: str, extra: dict[str, str]
    ) -> httpx.Response:
        # distribution: `n` caps the page, `last` is the item to start after, Link names the next page.
        n = int(request.url.params.get("n", "100"))
        if n > self.max_page_size:
            return httpx.Response(
                400, content=error_body("PAGINATION_NUMBER_INVALID", "invalid number of results")
            )
        last = request.url.params.get("last")
        start = items.index(last) + 1 if last in items else 0
        page = items[start : start + n]
        headers = {}
        if start + n < len(items):
            headers["Link"] = f'<{request.url.path}?n={n}&last={page[-1]}>; rel="next"'
        return httpx.Response(200, json={**extra, key: page}, headers=headers)
