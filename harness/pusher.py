"""Small generated images pushed straight over the registry HTTP API (distribution-spec "Pushing").

Blobs go up monolithically (POST an upload, PUT it with `?digest=`), or are mounted from another
repository of the same registry (`?mount=&from=`, as docker does for shared base layers); then the
manifest is PUT by tag. Everything is deterministic from its seed, and every push returns what it
pushed, so a caller knows the digests and sizes without asking the code under test.

Two shapes, one vocabulary (a `Base` of shared layers, a `seed`, `Pushed*` results):

* `Pusher.image`: one tag, a base's layers (uploaded once, mounted into other repositories) under a
  layer of its own;
* `Pusher.repository`: many tags quickly (`t000`, `t001`, ...) over the same layers, each with its own
  config and so its own manifest;
* `Pusher.multi_platform`: a tagged OCI index over two untagged platform images (amd64, arm64).

    with Pusher(registry.url) as push:
        image = push.image("team/app", "v1", base=make_base("alpine", layers=2), seed="app-v1")
        repo = push.repository("fault/alpha", tags=16, seed="faults")
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_bytes(seed: str, size: int) -> bytes:
    """`size` bytes derived from `seed` (not a real tarball: the registry never looks inside)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


@dataclass
class Base:
    """Shared base layers, uploaded once and mounted into every other repository that uses them."""

    name: str
    layers: list[bytes]
    home: dict[str, str] = field(default_factory=dict)  # layer digest -> a repository holding it


def make_base(name: str, *, layers: int = 3, size: int = 8192) -> Base:
    return Base(name=name, layers=[blob_bytes(f"base:{name}:{i}", size) for i in range(layers)])


@dataclass(frozen=True)
class PushedImage:
    repository: str
    tag: str
    digest: str  # of the manifest
    manifest: bytes
    config_digest: str
    config: bytes
    layers: tuple[tuple[str, int], ...]  # (digest, size), bottom to top

    @property
    def blobs(self) -> dict[str, int]:
        """The blobs this image makes the registry store besides its manifest: config and layers."""
        return {self.config_digest: len(self.config), **dict(self.layers)}


@dataclass
class PushedRepository:
    repository: str
    images: dict[str, PushedImage] = field(default_factory=dict)  # by tag, in push order

    @property
    def tags(self) -> dict[str, str]:
        """Tag -> manifest digest."""
        return {tag: image.digest for tag, image in self.images.items()}

    @property
    def manifests(self) -> dict[str, int]:
        """Manifest digest -> size."""
        return {image.digest: len(image.manifest) for image in self.images.values()}

    @property
    def blobs(self) -> dict[str, int]:
        """Digest -> size of every config and layer."""
        return {d: size for image in self.images.values() for d, size in image.blobs.items()}

    @property
    def layers(self) -> list[str]:
        """Layer digests, bottom to top: every tag has the same."""
        first = next(iter(self.images.values()), None)
        return [d for d, _ in first.layers] if first else []


def image_config(*, seed: str, layers: list[bytes], labels: dict[str, str] | None = None) -> bytes:
    return json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-02T03:04:05Z",
            "config": {"Labels": labels or {"seed": seed}},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(b"diff:" + layer) for layer in layers]},
            "history": [
                {"created": "2024-01-02T03:04:05Z", "created_by": f"RUN step {i} # {seed}"}
                for i in range(len(layers))
            ],
        },
        sort_keys=True,
    ).encode()


def image_manifest(*, config: bytes, layers: list[bytes], annotations: dict[str, str] | None = None) -> bytes:
    doc: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER, "digest": digest_of(b), "size": len(b)} for b in layers],
    }
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc, sort_keys=True).encode()


class Pusher:
    """Pushes generated images to one registry; thread-safe (one pooled httpx client)."""

    def __init__(self, base_url: str, *, max_connections: int = 16) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self.http = httpx.Client(base_url=base_url, timeout=60, limits=limits, trust_env=False)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Pusher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def upload(self, repository: str, data: bytes) -> str:
        """A monolithic upload (distribution-spec "Post then Put"); the digest."""
        digest = digest_of(data)
        if self.http.head(f"/v2/{repository}/blobs/{digest}").status_code == 200:
            return digest
        start = self.http.post(f"/v2/{repository}/blobs/uploads/")
        if start.status_code != 202:
            raise RuntimeError(f"upload to {repository}: HTTP {start.status_code} {start.text[:200]}")
        location = httpx.URL(str(self.http.base_url)).join(start.headers["Location"])
        done = self.http.put(
            location.copy_merge_params({"digest": digest}),
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        if done.status_code != 201:
            raise RuntimeError(f"upload to {repository}: HTTP {done.status_code} {done.text[:200]}")
        return digest

    def mount(self, repository: str, digest: str, source: str, data: bytes) -> None:
        """Cross-repository mount ("Mounting a blob from another repository"); an upload if refused."""
        resp = self.http.post(f"/v2/{repository}/blobs/uploads/", params={"mount": digest, "from": source})
        if resp.status_code == 201:
            return
        if resp.status_code == 202:  # the registry opened an upload instead; finish it
            location = httpx.URL(str(self.http.base_url)).join(resp.headers["Location"])
            self.http.put(location.copy_merge_params({"digest": digest}), content=data).raise_for_status()
            return
        raise RuntimeError(f"mount into {repository}: HTTP {resp.status_code}")

    def put_manifest(self, repository: str, reference: str, manifest: bytes) -> str:
        resp = self.http.put(
            f"/v2/{repository}/manifests/{reference}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        if resp.status_code != 201:
            raise RuntimeError(
                f"manifest {repository}:{reference}: HTTP {resp.status_code} {resp.text[:200]}"
            )
        return digest_of(manifest)

    def image(
        self,
        repository: str,
        tag: str,
        *,
        seed: str,
        base: Base | None = None,
        own_layer_bytes: int = 2048,
        config: bytes | None = None,
        annotations: dict[str, str] | None = None,
    ) -> PushedImage:
        """Push an image: `base`'s layers (mounted when another repository has them), a layer of its own
        (none when `own_layer_bytes` is 0) and its config (or the `config` given, to share one between
        manifests); tagged `tag`."""
        base_layers = list(base.layers) if base else []
        for data in base_layers:
            d = digest_of(data)
            home = base.home.get(d) if base else None
            if home is None:
                self.upload(repository, data)
                if base is not None:
                    base.home[d] = repository
            elif home != repository:
                self.mount(repository, d, home, data)
        layers = list(base_layers)
        if own_layer_bytes:
            own = blob_bytes(f"layer:{seed}", own_layer_bytes)
            self.upload(repository, own)
            layers.append(own)
        config = config or image_config(seed=seed, layers=layers)
        self.upload(repository, config)
        manifest = image_manifest(config=config, layers=layers, annotations=annotations)
        digest = self.put_manifest(repository, tag, manifest)
        return PushedImage(
            repository=repository,
            tag=tag,
            digest=digest,
            manifest=manifest,
            config_digest=digest_of(config),
            config=config,
            layers=tuple((digest_of(b), len(b)) for b in layers),
        )

    def platform_image(self, repository: str, *, seed: str, base: Base, arch: str) -> PushedImage:
        """An untagged platform image (put by digest), for an index to list."""
        for data in base.layers:
            self.upload(repository, data)
        own = blob_bytes(f"layer:{seed}", 1500)
        self.upload(repository, own)
        layers = [*base.layers, own]
        config = json.dumps(
            {**json.loads(image_config(seed=seed, layers=layers)), "architecture": arch}
        ).encode()
        self.upload(repository, config)
        manifest = image_manifest(config=config, layers=layers)
        digest = self.put_manifest(repository, digest_of(manifest), manifest)
        return PushedImage(
            repository=repository,
            tag="",
            digest=digest,
            manifest=manifest,
            config_digest=digest_of(config),
            config=config,
            layers=tuple((digest_of(b), len(b)) for b in layers),
        )

    def multi_platform(
        self, repository: str, tag: str, *, seed: str, base: Base
    ) -> tuple[str, bytes, list[PushedImage]]:
        """An OCI index tagged `tag` over an amd64 and an arm64 image of `base`: (digest, bytes, children)."""
        archs = ("amd64", "arm64")
        children = [self.platform_image(repository, seed=f"{seed}-{a}", base=base, arch=a) for a in archs]
        doc = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI_MANIFEST,
                    "digest": c.digest,
                    "size": len(c.manifest),
                    "platform": {"os": "linux", "architecture": a},
                }
                for c, a in zip(children, archs, strict=True)
            ],
        }
        raw = json.dumps(doc, sort_keys=True).encode()
        reply = self.http.put(
            f"/v2/{repository}/manifests/{tag}", content=raw, headers={"Content-Type": OCI_INDEX}
        )
        if reply.status_code != 201:
            raise RuntimeError(f"index {repository}:{tag}: HTTP {reply.status_code} {reply.text[:200]}")
        return digest_of(raw), raw, children

    def repository(self, repository: str, *, tags: int, seed: str, layers: int = 2) -> PushedRepository:
        """`tags` images `t000`, `t001`, ... in `repository` over the same `layers` layers (2 KiB, 4 KiB,
        ...), each tag its own config, so its own manifest. The layers derive from `seed` and the
        repository's name, so repositories (and registries pushed with other seeds) share nothing."""
        base = Base(
            name=f"{seed}/{repository}",
            layers=[blob_bytes(f"{seed}/{repository}/layer{i}", 2048 * (i + 1)) for i in range(layers)],
        )
        pushed = PushedRepository(repository)
        for t in range(tags):
            tag = f"t{t:03d}"
            pushed.images[tag] = self.image(
                repository, tag, seed=f"{seed}/{repository}/{tag}", base=base, own_layer_bytes=0
            )
        return pushed
