"""Small generated images pushed straight over the registry API (distribution-spec "Push").

For tests that need many tags quickly (fault tests): each tag gets its own config (so its own
manifest digest) over layers shared by the repository, pushed with a monolithic blob upload
(`POST /v2/<name>/blobs/uploads/` then `PUT <location>?digest=`) and `PUT /v2/<name>/manifests/<tag>`.
What was pushed is returned, so tests compare what Layerlens recorded with what went in.
"""

from __future__ import annotations

import hashlib
import json
import urllib.request
from dataclasses import dataclass, field

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_TYPE = "application/vnd.docker.container.image.v1+json"
LAYER_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class PushedRepository:
    name: str
    tags: dict[str, str] = field(default_factory=dict)  # tag -> manifest digest
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> size (layers and configs)
    manifests: dict[str, int] = field(default_factory=dict)  # digest -> size
    layers: list[str] = field(default_factory=list)  # layer digests, bottom to top (every tag the same)


def _request(method: str, url: str, data: bytes | None = None, headers: dict[str, str] | None = None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, dict(resp.headers)


def push_blob(base_url: str, repository: str, data: bytes) -> str:
    digest = _digest(data)
    _, headers = _request("POST", f"{base_url}/v2/{repository}/blobs/uploads/")
    location = headers["Location"]
    if location.startswith("/"):
        location = base_url + location
    sep = "&" if "?" in location else "?"
    _request("PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"})
    return digest


def push_repository(
    base_url: str, repository: str, *, tags: int, seed: str, layers: int = 2
) -> PushedRepository:
    """`tags` images in `repository`: shared layers (`layers` of them), one config and manifest per tag."""
    pushed = PushedRepository(repository)
    layer_descriptors = []
    for i in range(layers):
        data = hashlib.sha256(f"{seed}/{repository}/layer{i}".encode()).digest() * (64 * (i + 1))
        digest = push_blob(base_url, repository, data)
        pushed.blobs[digest] = len(data)
        pushed.layers.append(digest)
        layer_descriptors.append({"mediaType": LAYER_TYPE, "size": len(data), "digest": digest})
    diff_ids = [d["digest"] for d in layer_descriptors]  # not real tar diff_ids; never checked by a registry
    for t in range(tags):
        tag = f"t{t:03d}"
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Labels": {"tag": tag, "seed": seed}},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created_by": f"generated layer {i}"} for i in range(layers)],
            },
            sort_keys=True,
        ).encode()
        config_digest = push_blob(base_url, repository, config)
        pushed.blobs[config_digest] = len(config)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER_V2,
                "config": {"mediaType": CONFIG_TYPE, "size": len(config), "digest": config_digest},
                "layers": layer_descriptors,
            },
            indent=3,
        ).encode()
        _request("PUT", f"{base_url}/v2/{repository}/manifests/{tag}", manifest, {"Content-Type": DOCKER_V2})
        pushed.tags[tag] = _digest(manifest)
        pushed.manifests[_digest(manifest)] = len(manifest)
    return pushed
