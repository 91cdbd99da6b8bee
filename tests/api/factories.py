"""Hand-made registry records, so every figure a test asserts is known by construction."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from analytics.ingest.snapshot import snapshot_ingest
from analytics.models import Registry, Repository
from workers.registry.records import (
    BlobRecord,
    HistoryRecord,
    ImageRecord,
    IndexChild,
    IndexRecord,
    Platform,
    RepositorySnapshot,
)

LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
LINUX_AMD64 = Platform(os="linux", architecture="amd64")
CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def layer(label: str, size: int) -> BlobRecord:
    return BlobRecord(
        digest=digest(f"layer:{label}"),
        media_type=LAYER,
        size=size,
        diff_id=digest(f"diff:{label}"),
        uncompressed_size=size * 3,
    )


def image(
    label: str,
    *,
    layers: list[BlobRecord],
    config_size: int,
    manifest_size: int,
    platform: Platform = LINUX_AMD64,
) -> ImageRecord:
    """An image whose history has one entry per layer plus one empty (ENV) entry after the first."""
    history: list[HistoryRecord] = []
    for i in range(len(layers)):
        history.append(
            HistoryRecord(
                created=CREATED,
                created_by=f"RUN build {label} step {i}",
                comment="",
                author="",
                empty_layer=False,
                layer_position=i,
            )
        )
        if i == 0:
            history.append(
                HistoryRecord(
                    created=CREATED,
                    created_by=f"ENV {label.upper()}=1",
                    comment="",
                    author="",
                    empty_layer=True,
                    layer_position=None,
                )
            )
    return ImageRecord(
        digest=digest(f"manifest:{label}"),
        media_type=MANIFEST,
        size=manifest_size,
        config=BlobRecord(digest=digest(f"config:{label}"), media_type=CONFIG, size=config_size),
        layers=tuple(layers),
        platform=platform,
        created=CREATED,
        history=tuple(history),
    )


def index(label: str, *, children: list[ImageRecord], size: int) -> IndexRecord:
    return IndexRecord(
        digest=digest(f"index:{label}"),
        media_type=INDEX,
        size=size,
        children=tuple(
            IndexChild(digest=c.digest, media_type=c.media_type, size=c.size, platform=c.platform)
            for c in children
        ),
    )


def ingest(
    registry: Registry,
    repository: str,
    tags: dict[str, ImageRecord | IndexRecord],
    extra: tuple[ImageRecord, ...] = (),
) -> Repository:
    """Ingest one complete snapshot of `repository`: `tags` maps tag → manifest (index children included)."""
    repo, _ = Repository.objects.get_or_create(registry=registry, name=repository)
    manifests: dict[str, ImageRecord | IndexRecord] = {}
    for record in [*tags.values(), *extra]:
        manifests[record.digest] = record
    snapshot = RepositorySnapshot(
        registry_url=registry.url,
        repository=repository,
        tags={name: record.digest for name, record in tags.items()},
        manifests=tuple(manifests.values()),
    )
    snapshot_ingest(repository=repo, snapshot=snapshot)
    return repo
