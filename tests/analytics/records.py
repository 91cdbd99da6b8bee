"""Hand-made registry records whose figures are known by construction."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from workers.registry.records import (
    BlobRecord,
    HistoryRecord,
    ImageRecord,
    IndexChild,
    IndexRecord,
    Platform,
    RepositorySnapshot,
)

DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG = "application/vnd.docker.container.image.v1+json"


def digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def layer(label: str, size: int) -> BlobRecord:
    return BlobRecord(
        digest=digest("layer:" + label), media_type=LAYER, size=size, diff_id=digest("diff:" + label)
    )


def image(
    label: str, layers: list[BlobRecord], *, arch: str = "amd64", manifest_size: int = 500
) -> ImageRecord:
    config = BlobRecord(digest=digest("config:" + label), media_type=CONFIG, size=1000 + len(layers))
    history = tuple(
        HistoryRecord(
            created=datetime(2026, 1, 1, tzinfo=UTC),
            created_by=f"RUN build {label} step {i}",
            comment="",
            author="",
            empty_layer=False,
            layer_position=i,
        )
        for i in range(len(layers))
    ) + (
        HistoryRecord(
            created=datetime(2026, 1, 1, tzinfo=UTC),
            created_by=f'CMD ["{label}"]',
            comment="",
            author="",
            empty_layer=True,
            layer_position=None,
        ),
    )
    return ImageRecord(
        digest=digest("manifest:" + label + json.dumps([x.digest for x in layers])),
        media_type=DOCKER_V2,
        size=manifest_size,
        config=config,
        layers=tuple(layers),
        platform=Platform(os="linux", architecture=arch),
        created=datetime(2026, 1, 1, tzinfo=UTC),
        history=history,
    )


def index(label: str, children: list[ImageRecord], size: int = 300) -> IndexRecord:
    return IndexRecord(
        digest=digest("index:" + label),
        media_type=OCI_INDEX,
        size=size,
        children=tuple(
            IndexChild(digest=c.digest, media_type=c.media_type, size=c.size, platform=c.platform)
            for c in children
        ),
    )


def snapshot(
    repository: str, tags: dict[str, ImageRecord | IndexRecord], extra=(), failures=()
) -> RepositorySnapshot:
    manifests: dict[str, ImageRecord | IndexRecord] = {}
    for record in [*tags.values(), *extra]:
        manifests[record.digest] = record
    return RepositorySnapshot(
        registry_url="http://127.0.0.1:5000",
        repository=repository,
        tags={name: r.digest for name, r in tags.items()},
        manifests=tuple(manifests.values()),
        failures=tuple(failures),
    )
