"""Hand-made registry records whose figures are known by construction.

Digests derive from labels (`digest("layer:base")`), sizes are what the caller gives, so a test or a
benchmark knows every figure without asking the code under test. `ingest` writes a snapshot of such
records for a repository, as a scan would.

    base = layer("base", 10_000)
    web = image("web", [base, layer("web", 300)])
    snapshot("apps/web", {"1.0": web, "latest": web})
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from workers.registry.records import (
    BlobRecord,
    HistoryRecord,
    ImageRecord,
    IndexChild,
    IndexRecord,
    ManifestFailure,
    Platform,
    RepositorySnapshot,
)

if TYPE_CHECKING:
    from analytics.models import Registry, Repository

MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG = "application/vnd.docker.container.image.v1+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
INDEX = "application/vnd.oci.image.index.v1+json"
CREATED = datetime(2026, 1, 1, tzinfo=UTC)
REGISTRY_URL = "http://127.0.0.1:5000"


def digest(label: str) -> str:
    return "sha256:" + hashlib.sha256(label.encode()).hexdigest()


def layer(label: str, size: int, *, uncompressed_size: int | None = None) -> BlobRecord:
    """A gzip layer of `size` bytes; `uncompressed_size` as an engine or a deep scan would know it."""
    return BlobRecord(
        digest=digest("layer:" + label),
        media_type=LAYER,
        size=size,
        diff_id=digest("diff:" + label),
        uncompressed_size=uncompressed_size,
    )


def _history_entry(created_by: str, position: int | None) -> HistoryRecord:
    return HistoryRecord(
        created=CREATED,
        created_by=created_by,
        comment="",
        author="",
        empty_layer=position is None,
        layer_position=position,
    )


def image(
    label: str,
    layers: list[BlobRecord],
    *,
    arch: str = "amd64",
    config_size: int | None = None,
    manifest_size: int = 500,
    empty_steps: Mapping[int, str] | None = None,
) -> ImageRecord:
    """A linux image whose history has a `RUN build <label> step <i>` per layer, plus the steps that
    add no layer (`empty_steps`: created_by by how many layers come before it; by default a `CMD`
    after the last). The config is `config_size` bytes, by default 1000 + the number of layers. The
    manifest's digest covers the label and the layers, so one label over other layers is another image."""
    if empty_steps is None:
        empty_steps = {len(layers): f'CMD ["{label}"]'}
    history: list[HistoryRecord] = []
    for before in range(len(layers) + 1):
        if before in empty_steps:
            history.append(_history_entry(empty_steps[before], None))
        if before < len(layers):
            history.append(_history_entry(f"RUN build {label} step {before}", before))
    size = 1000 + len(layers) if config_size is None else config_size
    return ImageRecord(
        digest=digest("manifest:" + label + json.dumps([x.digest for x in layers])),
        media_type=MANIFEST,
        size=manifest_size,
        config=BlobRecord(digest=digest("config:" + label), media_type=CONFIG, size=size),
        layers=tuple(layers),
        platform=Platform(os="linux", architecture=arch),
        created=CREATED,
        history=tuple(history),
    )


def index(label: str, children: list[ImageRecord], *, size: int = 300) -> IndexRecord:
    return IndexRecord(
        digest=digest("index:" + label),
        media_type=INDEX,
        size=size,
        children=tuple(
            IndexChild(digest=c.digest, media_type=c.media_type, size=c.size, platform=c.platform)
            for c in children
        ),
    )


def snapshot(
    repository: str,
    tags: Mapping[str, ImageRecord | IndexRecord],
    *,
    extra: Iterable[ImageRecord | IndexRecord] = (),
    failures: Iterable[ManifestFailure] = (),
    registry_url: str = REGISTRY_URL,
) -> RepositorySnapshot:
    """A complete snapshot of `repository`: `tags` maps tag -> manifest; `extra` adds manifests no tag
    names (an index's children)."""
    manifests: dict[str, ImageRecord | IndexRecord] = {}
    for record in [*tags.values(), *extra]:
        manifests[record.digest] = record
    return RepositorySnapshot(
        registry_url=registry_url,
        repository=repository,
        tags={name: r.digest for name, r in tags.items()},
        manifests=tuple(manifests.values()),
        failures=tuple(failures),
    )


def ingest(
    registry: Registry,
    repository: str,
    tags: Mapping[str, ImageRecord | IndexRecord],
    *,
    extra: Iterable[ImageRecord | IndexRecord] = (),
) -> Repository:
    """Ingest a complete snapshot of `repository` (created if missing) in `registry`, as a scan would."""
    # Imported here: the records themselves need no Django, only writing them does.
    from analytics.ingest.snapshot import snapshot_ingest
    from analytics.models import Repository

    repo, _ = Repository.objects.get_or_create(registry=registry, name=repository)
    snap = snapshot(repository, tags, extra=extra, registry_url=registry.url)
    snapshot_ingest(repository=repo, snapshot=snap)
    return repo
