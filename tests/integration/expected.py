"""Figures computed independently of Layerlens: from `skopeo inspect --raw` and the blob store."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass

from harness.images import skopeo_inspect_raw


@dataclass(frozen=True)
class ExpectedImage:
    repository: str
    digest: str
    parts: dict[str, int]  # digest -> size: the manifest, its config and its layers
    layers: dict[str, int]
    platform: str


@dataclass(frozen=True)
class ExpectedRegistry:
    images: list[ExpectedImage]
    indexes: dict[tuple[str, str], int]  # (repository, digest) -> size

    def logical_bytes(self) -> int:
        return sum(sum(i.parts.values()) for i in self.images) + sum(self.indexes.values())

    def stored_bytes(self) -> int:
        distinct = {d: s for i in self.images for d, s in i.parts.items()}
        distinct.update({d: s for (_, d), s in self.indexes.items()})
        return sum(distinct.values())

    def distinct_layers(self) -> int:
        return len({d for i in self.images for d in i.layers})

    def shared_unique(self) -> dict[tuple[str, str], tuple[int, int]]:
        holders = Counter(d for i in self.images for d in i.parts)
        return {
            (i.repository, i.digest): (
                sum(s for d, s in i.parts.items() if holders[d] > 1),
                sum(s for d, s in i.parts.items() if holders[d] == 1),
            )
            for i in self.images
        }


def expected_registry(host: str, tags: list[tuple[str, str]]) -> ExpectedRegistry:
    """Walk every (repository, tag) with skopeo, expanding indexes into their platform images."""
    images: dict[tuple[str, str], ExpectedImage] = {}
    indexes: dict[tuple[str, str], int] = {}

    def visit(repository: str, ref: str, platform: str = "") -> None:
        raw = skopeo_inspect_raw(f"{host}/{repository}{ref}")
        doc = json.loads(raw)
        from harness.images import manifest_digest

        digest = manifest_digest(raw)
        if "manifests" in doc:
            indexes[(repository, digest)] = len(raw)
            for child in doc["manifests"]:
                p = child.get("platform", {})
                visit(repository, "@" + child["digest"], f"{p.get('os')}/{p.get('architecture')}")
            return
        layers = {layer["digest"]: layer["size"] for layer in doc["layers"]}
        parts = {digest: len(raw), doc["config"]["digest"]: doc["config"]["size"], **layers}
        images[(repository, digest)] = ExpectedImage(repository, digest, parts, layers, platform)

    for repository, tag in tags:
        visit(repository, ":" + tag)
    return ExpectedRegistry(images=list(images.values()), indexes=indexes)
