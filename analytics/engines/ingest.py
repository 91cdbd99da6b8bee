"""Write side for Docker Engines: an `EngineSnapshot` (workers.engine) becomes rows, idempotently.

Layers are global by ChainID; images are per engine by image ID. A snapshot is the whole engine, so
images it does not list are marked `present=False`. History rows are rewritten each scan because their
`row_id` and `tags` follow what the engine tags now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from analytics.models import (
    Blob,
    Engine,
    EngineHistoryEntry,
    EngineImage,
    EngineImageLayer,
    EngineLayer,
    ManifestLayer,
)
from workers.engine import EngineSnapshot, iter_layers


@dataclass(frozen=True)
class EngineIngestResult:
    images: int
    new_images: int
    layers: int
    gone_images: int
    linked_blobs: int


def _layers_upsert(snapshot: EngineSnapshot) -> dict[str, int]:
    records = sorted(iter_layers(snapshot), key=lambda r: r.chain_id)
    EngineLayer.objects.bulk_create(
        [EngineLayer(chain_id=r.chain_id, diff_id=r.diff_id, size=r.size) for r in records],
        ignore_conflicts=True,
        batch_size=1000,
    )
    rows = {
        chain: (pk, size)
        for pk, chain, size in EngineLayer.objects.filter(
            chain_id__in=[r.chain_id for r in records]
        ).values_list("id", "chain_id", "size")
    }
    sized = [
        EngineLayer(id=rows[r.chain_id][0], size=r.size)
        for r in records
        if r.size is not None and rows[r.chain_id][1] != r.size
    ]
    if sized:
        EngineLayer.objects.bulk_update(sized, ["size"], batch_size=1000)
    return {chain: pk for chain, (pk, _) in rows.items()}


def engine_snapshot_ingest(
    *, engine: Engine, snapshot: EngineSnapshot, now: datetime | None = None
) -> EngineIngestResult:
    """Record a whole engine in one transaction, then link registry blobs to its layers."""
    now = now or timezone.now()
    with transaction.atomic():
        Engine.objects.filter(id=engine.id).update(
            engine_id=snapshot.engine_id,
            server_version=snapshot.server_version,
            os=snapshot.os,
            architecture=snapshot.architecture,
            storage_driver=snapshot.storage_driver,
        )
        layer_ids = _layers_upsert(snapshot)
        existing = {i.image_id: i for i in EngineImage.objects.select_for_update().filter(engine=engine)}
        new_images = 0
        for rec in snapshot.images:
            img = existing.get(rec.id)
            if img is None:
                img = EngineImage(engine=engine, image_id=rec.id, first_seen=now)
                new_images += 1
            img.parent_id = rec.parent_id
            img.created = rec.created
            img.repo_tags, img.repo_digests = list(rec.repo_tags), list(rec.repo_digests)
            img.os, img.architecture, img.variant = rec.os, rec.architecture, rec.variant
            img.containers, img.layer_count = rec.containers, len(rec.layers)
            img.present, img.last_seen = True, now
            img.save()
            # An image ID is the hash of its config: its layers never change, only whether we wrote them.
            if not img.image_layers.exists():
                EngineImageLayer.objects.bulk_create(
                    [
                        EngineImageLayer(image=img, position=lyr.position, layer_id=layer_ids[lyr.chain_id])
                        for lyr in rec.layers
                    ]
                )
            img.history.all().delete()
            EngineHistoryEntry.objects.bulk_create(
                [
                    EngineHistoryEntry(
                        image=img,
                        position=h.position,
                        row_id=h.row_id,
                        created=h.created,
                        created_by=h.created_by,
                        comment=h.comment,
                        size=h.size,
                        tags=list(h.tags),
                        empty_layer=h.empty_layer,
                        layer_position=h.layer_position,
                    )
                    for h in rec.history
                ]
            )
        seen = {rec.id for rec in snapshot.images}
        gone = (
            EngineImage.objects.filter(engine=engine, present=True)
            .exclude(image_id__in=seen)
            .update(present=False)
        )
        Engine.objects.filter(id=engine.id).update(last_scanned_at=now)
    linked = blobs_link_engine_layers(engine=engine)
    return EngineIngestResult(
        images=len(snapshot.images),
        new_images=new_images,
        layers=len(layer_ids),
        gone_images=gone,
        linked_blobs=linked,
    )


def blobs_link_engine_layers(*, engine: Engine) -> int:
    """Give registry layer blobs the uncompressed size the engine measured for the same content.

    1. An engine image pulled from a registry names the manifest in its `RepoDigests`; that manifest's
       layer blobs are, in order, the image's diff IDs (the config's `rootfs.diff_ids`), so blobs that
       lack a diff_id get it.
    2. Every blob whose diff_id an engine layer has takes that layer's size: a layer's DiffSize is a
       property of its own content (diff_id), whatever lies under it.
    Returns the number of blobs updated.
    """
    updated = 0
    digests: dict[str, EngineImage] = {}
    for img in EngineImage.objects.filter(engine=engine, present=True).exclude(repo_digests=[]):
        for ref in img.repo_digests:
            digests[ref.rsplit("@", 1)[-1]] = img
    if digests:
        fixes: list[Blob] = []
        by_manifest: dict[str, list[tuple[int, int, str]]] = {}
        for ml in ManifestLayer.objects.filter(manifest__digest__in=list(digests)).values_list(
            "manifest__digest", "position", "blob_id", "blob__diff_id"
        ):
            by_manifest.setdefault(ml[0], []).append(ml[1:])
        for digest, rows in by_manifest.items():
            diff_ids = list(
                digests[digest].image_layers.order_by("position").values_list("layer__diff_id", flat=True)
            )
            rows.sort()
            if len(rows) != len(diff_ids):
                continue  # foreign layers or a mismatch: never guess
            fixes += [
                Blob(id=blob_id, diff_id=d)
                for (_, blob_id, have), d in zip(rows, diff_ids, strict=True)
                if not have
            ]
        if fixes:
            Blob.objects.bulk_update(fixes, ["diff_id"], batch_size=1000)
            updated += len(fixes)
    with connection.cursor() as cur:
        cur.execute(
            """
            UPDATE analytics_blob b SET uncompressed_size = l.size
            FROM (
                SELECT DISTINCT el.diff_id, el.size
                FROM analytics_enginelayer el
                JOIN analytics_engineimagelayer eil ON eil.layer_id = el.id
                JOIN analytics_engineimage ei ON ei.id = eil.image_id
                WHERE ei.engine_id = %s AND el.size IS NOT NULL
            ) l
            WHERE b.diff_id = l.diff_id AND b.uncompressed_size IS DISTINCT FROM l.size
            """,
            [engine.id],
        )
        updated += cur.rowcount
    return updated
