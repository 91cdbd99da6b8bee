"""The write side: turn a `RepositorySnapshot` into rows, idempotently.

Every write is keyed on digests and names under unique constraints, so re-running ingest for the same
snapshot rewrites the same rows, and two workers ingesting repositories that share blobs at the same
time neither fail nor duplicate rows (inserts are ordered by digest and ignore conflicts).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from analytics.infra.text import printable
from analytics.ingest.answers import content_version_bump
from analytics.ingest.figures import figures_apply, registry_held_add
from analytics.ingest.known import known_config_fill, manifest_ids
from analytics.models import (
    Blob,
    HistoryEntry,
    IndexEntry,
    Manifest,
    ManifestLayer,
    Repository,
    RepositoryManifest,
    Scan,
    ScanError,
    Tag,
    TagEvent,
)
from workers.registry.records import KIND_ARTIFACT, BlobRecord, ImageRecord, IndexRecord, RepositorySnapshot


@dataclass(frozen=True)
class IngestResult:
    tags: int
    images: int
    manifests: int
    new_manifests: int
    tag_events: int
    failures: int


def _blob_rows(images: Iterable[ImageRecord]) -> list[Blob]:
    by_digest: dict[str, BlobRecord] = {}
    for image in images:
        for blob in (*([image.config] if image.config else []), *image.layers):
            known = by_digest.get(blob.digest)
            if known is None or (not known.diff_id and blob.diff_id):
                by_digest[blob.digest] = blob
    return [
        Blob(
            digest=b.digest,
            media_type=b.media_type,
            size=b.size,
            diff_id=b.diff_id or "",
            uncompressed_size=b.uncompressed_size,
        )
        for _, b in sorted(by_digest.items())
    ]


def blobs_upsert(*, images: Iterable[ImageRecord]) -> dict[str, int]:
    """Insert unknown blobs (in digest order, so concurrent writers never deadlock); return id by digest."""
    rows = _blob_rows(images)
    if not rows:
        return {}
    Blob.objects.bulk_create(rows, ignore_conflicts=True, batch_size=1000)
    ids: dict[str, int] = {}
    missing_diff_ids: list[Blob] = []
    known = {r.digest: r for r in rows}
    for blob_id, digest, diff_id in Blob.objects.filter(digest__in=known).values_list(
        "id", "digest", "diff_id"
    ):
        ids[digest] = blob_id
        if not diff_id and known[digest].diff_id:
            missing_diff_ids.append(Blob(id=blob_id, diff_id=known[digest].diff_id))
    if missing_diff_ids:
        Blob.objects.bulk_update(missing_diff_ids, ["diff_id"], batch_size=1000)
    return ids


def _image_kind(record: ImageRecord) -> str:
    """The source says what a manifest is: artifacts (OCI artifacts, BuildKit attestations, signature
    and SBOM tags) are stored bytes, never images."""
    return Manifest.Kind.ARTIFACT if record.kind == KIND_ARTIFACT else Manifest.Kind.IMAGE


def manifests_upsert(*, records: Iterable[ImageRecord | IndexRecord]) -> tuple[dict[str, int], set[str]]:
    """Write manifests with their layers, history and index entries; return (id by digest, new digests).

    Images go first, so the children an index names already exist when its entries are written.
    """
    records = sorted(
        {r.digest: r for r in records}.values(), key=lambda r: (isinstance(r, IndexRecord), r.digest)
    )
    if not records:
        return {}, set()
    digests = [r.digest for r in records]
    existing = dict(Manifest.objects.filter(digest__in=digests).values_list("digest", "id"))
    # Images whose config was known (not fetched) take its facts from a stored image naming it.
    records = known_config_fill([r for r in records if r.digest not in existing]) + [
        r for r in records if r.digest in existing
    ]
    images = [r for r in records if isinstance(r, ImageRecord)]
    blob_ids = blobs_upsert(images=[r for r in images if r.digest not in existing])

    new_rows = []
    for r in records:
        if r.digest in existing:
            continue
        if isinstance(r, ImageRecord):
            new_rows.append(
                Manifest(
                    digest=r.digest,
                    media_type=r.media_type,
                    kind=_image_kind(r),
                    size=r.size,
                    config_id=blob_ids[r.config.digest] if r.config else None,
                    os=r.platform.os,
                    architecture=r.platform.architecture,
                    variant=r.platform.variant,
                    os_version=r.platform.os_version,
                    created=r.created,
                    labels=dict(r.labels),
                    layer_count=len(r.layers),
                    layers_size=sum(layer.size for layer in r.layers),
                    artifact_type=r.artifact_type,
                    subject=r.subject,
                )
            )
        else:
            new_rows.append(
                Manifest(
                    digest=r.digest,
                    media_type=r.media_type,
                    kind=Manifest.Kind.INDEX,
                    size=r.size,
                    artifact_type=r.artifact_type,
                    subject=r.subject,
                )
            )
    Manifest.objects.bulk_create(new_rows, ignore_conflicts=True, batch_size=1000)
    # Index children known before this snapshot (so not read again) have rows to link entries to.
    children = {c.digest for r in records if isinstance(r, IndexRecord) for c in r.children}
    ids = manifest_ids([*digests, *children])
    new_digests = {row.digest for row in new_rows}

    # Children rows only for manifests this call created; a concurrent writer that created the same
    # manifest writes identical rows, which the unique constraints absorb.
    layers, history, entries = [], [], []
    seen_configs: set[int] = set()
    for r in records:
        if r.digest not in new_digests:
            continue
        manifest_id = ids[r.digest]
        if isinstance(r, ImageRecord):
            layers.extend(
                ManifestLayer(
                    manifest_id=manifest_id,
                    position=i,
                    blob_id=blob_ids[layer.digest],
                    media_type=layer.media_type,
                    annotations=dict(layer.annotations),
                    urls=list(layer.urls),
                )
                for i, layer in enumerate(r.layers)
            )
            # History hangs off the config; schema 1 has none, so there it hangs off the manifest.
            config_id = blob_ids[r.config.digest] if r.config else None
            if config_id is None or config_id not in seen_configs:
                if config_id is not None:
                    seen_configs.add(config_id)
                history.extend(
                    HistoryEntry(
                        config_id=config_id,
                        manifest_id=manifest_id if config_id is None else None,
                        position=i,
                        created=h.created,
                        created_by=h.created_by,
                        comment=h.comment,
                        author=h.author,
                        empty_layer=h.empty_layer,
                        layer_position=h.layer_position,
                    )
                    for i, h in enumerate(r.history)
                )
        else:
            for i, child in enumerate(r.children):
                if child.digest not in ids:
                    continue  # a child that failed to read; the failure is on the scan
                entries.append(
                    IndexEntry(
                        index_id=manifest_id,
                        position=i,
                        child_id=ids[child.digest],
                        os=child.platform.os,
                        architecture=child.platform.architecture,
                        variant=child.platform.variant,
                        media_type=child.media_type,
                        annotations=dict(child.annotations),
                    )
                )
    ManifestLayer.objects.bulk_create(layers, ignore_conflicts=True, batch_size=2000)
    HistoryEntry.objects.bulk_create(history, ignore_conflicts=True, batch_size=2000)
    IndexEntry.objects.bulk_create(entries, ignore_conflicts=True, batch_size=2000)
    return ids, new_digests


def _record_tag_changes(
    *,
    repository: Repository,
    seen: dict[str, int],
    digest_of: dict[int, str],
    complete: bool,
    unknown: set[str],
    gone: Collection[str] = (),
    scan: Scan | None,
    now: datetime,
) -> int:
    current = {t.name: t for t in Tag.objects.filter(repository=repository).select_related("manifest")}
    events: list[TagEvent] = []
    unchanged: list[int] = []
    new_tags = [
        Tag(repository=repository, name=name, manifest_id=manifest_id, first_seen=now, last_seen=now)
        for name, manifest_id in sorted(seen.items())
        if name not in current
    ]
    if new_tags:
        Tag.objects.bulk_create(new_tags, ignore_conflicts=True)
        current.update(
            {
                t.name: t
                for t in Tag.objects.filter(repository=repository, name__in=[t.name for t in new_tags])
            }
        )
        events.extend(
            TagEvent(
                tag=current[t.name],
                old_digest="",
                new_digest=digest_of[t.manifest_id],
                seen_at=now,
                scan=scan,
            )
            for t in new_tags
        )
    created = {t.name for t in new_tags}
    for name, manifest_id in seen.items():
        if name in created:
            continue
        tag = current[name]
        if tag.manifest_id == manifest_id and tag.removed_at is None:
            unchanged.append(tag.id)
            continue
        old = tag.manifest.digest if (tag.manifest and tag.removed_at is None) else ""
        events.append(
            TagEvent(tag=tag, old_digest=old, new_digest=digest_of[manifest_id], seen_at=now, scan=scan)
        )
        Tag.objects.filter(id=tag.id).update(manifest_id=manifest_id, last_seen=now, removed_at=None)
    if unchanged:
        Tag.objects.filter(id__in=unchanged).update(last_seen=now)
    for name, tag in current.items():
        if name in seen or tag.removed_at is not None:
            continue
        if (complete and name not in unknown) or name in gone:
            events.append(
                TagEvent(
                    tag=tag,
                    old_digest=tag.manifest.digest if tag.manifest else "",
                    new_digest="",
                    seen_at=now,
                    scan=scan,
                )
            )
            Tag.objects.filter(id=tag.id).update(removed_at=now)
    TagEvent.objects.bulk_create(events)
    return len(events)


_REACHABLE_SQL = """
WITH RECURSIVE reach(manifest_id) AS (
    SELECT manifest_id FROM analytics_tag
    WHERE repository_id = %(repo)s AND removed_at IS NULL AND manifest_id IS NOT NULL
    UNION
    SELECT e.child_id FROM analytics_indexentry e JOIN reach ON e.index_id = reach.manifest_id
)
"""


def _presence_refresh(*, repository_id: int, now: datetime) -> tuple[set[int], set[int]]:
    """Held now = reachable from a current tag, through indexes to any depth (UNION stops cycles).

    Derived from the tags rather than from one snapshot, so a one-tag scan, a tag whose manifest
    failed to read this time (it keeps what it held) and a full scan all leave the same answer.
    Returns the manifest ids that became held and those no longer held (for `analytics.ingest.figures`).
    """
    params = {"repo": repository_id, "now": now}
    with connection.cursor() as cursor:
        cursor.execute(
            _REACHABLE_SQL
            + """
            INSERT INTO analytics_repositorymanifest
                (repository_id, manifest_id, present, first_seen, last_seen)
            SELECT %(repo)s, manifest_id, TRUE, %(now)s, %(now)s FROM reach
            ON CONFLICT (repository_id, manifest_id)
            DO UPDATE SET present = TRUE WHERE NOT analytics_repositorymanifest.present
            RETURNING manifest_id
            """,
            params,
        )
        gained = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            _REACHABLE_SQL
            + """
            UPDATE analytics_repositorymanifest SET present = FALSE
            WHERE repository_id = %(repo)s AND present AND manifest_id NOT IN (SELECT manifest_id FROM reach)
            RETURNING manifest_id
            """,
            params,
        )
        lost = {row[0] for row in cursor.fetchall()}
    return gained, lost


def _unchanged_record(
    *, repository: Repository, snapshot: RepositorySnapshot, now: datetime
) -> IngestResult | None:
    """A rescan that found every tag where it was: only last-seen times move (holdings, and with them
    every maintained figure, are derived from the tags, so nothing else can change). None otherwise."""
    tags = Tag.objects.filter(repository=repository, removed_at__isnull=True)
    current = dict(tags.values_list("name", "manifest__digest"))
    if current != snapshot.tags:
        return None
    tags.update(last_seen=now)
    held = RepositoryManifest.objects.filter(repository=repository, present=True)
    held.filter(last_seen__lt=now).update(last_seen=now)
    images = held.filter(manifest__kind=Manifest.Kind.IMAGE).count()
    Repository.objects.filter(id=repository.id).update(last_scanned_at=now)
    return IngestResult(
        tags=len(current), images=images, manifests=0, new_manifests=0, tag_events=0, failures=0
    )


def unchanged_record_many(*, expected: dict[int, dict[str, str]], now: datetime) -> dict[int, int]:
    """`_unchanged_record` for several repositories at once, in five statements whatever their number:
    `expected` is each repository's tags (name -> digest) as a rescan found them. The repositories whose
    current tags are exactly those have their tags' and holdings' last-seen times and `last_scanned_at`
    moved to `now`; returns the images each of them holds. The others are left untouched and out of
    the answer: the caller ingests their snapshot in full. Call inside the caller's transaction."""
    ids = sorted(expected)
    if not ids:
        return {}
    found: dict[int, dict[str, str | None]] = {rid: {} for rid in ids}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.repository_id, t.name, m.digest FROM analytics_tag t"
            " LEFT JOIN analytics_manifest m ON m.id = t.manifest_id"
            " WHERE t.repository_id = ANY(%s) AND t.removed_at IS NULL",
            [ids],
        )
        for rid, name, digest in cursor.fetchall():
            found[rid][name] = digest
        same = [rid for rid in ids if found[rid] == expected[rid]]
        if not same:
            return {}
        cursor.execute(
            "UPDATE analytics_tag SET last_seen = %s WHERE repository_id = ANY(%s) AND removed_at IS NULL",
            [now, same],
        )
        cursor.execute(
            "UPDATE analytics_repositorymanifest SET last_seen = %s"
            " WHERE repository_id = ANY(%s) AND present AND last_seen < %s",
            [now, same, now],
        )
        cursor.execute(
            "SELECT rm.repository_id, count(*) FROM analytics_repositorymanifest rm"
            " JOIN analytics_manifest m ON m.id = rm.manifest_id"
            " WHERE rm.repository_id = ANY(%s) AND rm.present AND m.kind = %s GROUP BY 1",
            [same, Manifest.Kind.IMAGE.value],
        )
        images = dict(cursor.fetchall())
        cursor.execute("UPDATE analytics_repository SET last_scanned_at = %s WHERE id = ANY(%s)", [now, same])
    return {rid: images.get(rid, 0) for rid in same}


def _current_tags(*, repository_id: int) -> int:
    """Tags of a repository naming a manifest now (what `RegistryHeld.tags` counts)."""
    return Tag.objects.filter(repository_id=repository_id, removed_at=None, manifest__isnull=False).count()


def snapshot_ingest(
    *,
    repository: Repository,
    snapshot: RepositorySnapshot,
    scan: Scan | None = None,
    complete: bool = True,
    gone: Collection[str] = frozenset(),
    scanned: bool = True,
) -> IngestResult:
    """Record what one scan of one repository found.

    1. Blobs, manifests, layers, history and index entries, keyed on digests (new content only).
    2. Which manifests the repository holds now (`RepositoryManifest.present`).
    3. Tags: created, moved or removed, each change a `TagEvent`.
    4. Failures, as `ScanError` rows on the scan.

    `complete` is false when the snapshot covers only some tags (a one-tag scan): then no tag the
    snapshot did not mention is marked gone, but for those in `gone` (the registry said it does not
    have them: a registry event's tags read again). `scanned` is false for what registry events
    brought in: the repository's `last_scanned_at` stays the last scan's.
    """
    now = timezone.now()
    failed_refs = {f.reference for f in snapshot.failures}
    with transaction.atomic():
        if complete and not snapshot.manifests and not snapshot.failures:
            unchanged = _unchanged_record(repository=repository, snapshot=snapshot, now=now)
            if unchanged is not None:
                return unchanged
        ids, new_digests = manifests_upsert(records=snapshot.manifests)
        # Tags naming a manifest stored before (unchanged, or known from elsewhere) carry no record.
        ids.update(manifest_ids(d for d in snapshot.tags.values() if d not in ids))
        digest_of = {v: k for k, v in ids.items()}
        seen_tags = {name: ids[digest] for name, digest in snapshot.tags.items() if digest in ids}

        RepositoryManifest.objects.bulk_create(
            [
                RepositoryManifest(
                    repository=repository, manifest_id=m, present=False, first_seen=now, last_seen=now
                )
                for m in sorted(ids.values())
            ],
            update_conflicts=True,
            unique_fields=["repository", "manifest"],
            update_fields=["last_seen"],
            batch_size=1000,
        )
        tags_before = _current_tags(repository_id=repository.id)
        events = _record_tag_changes(
            repository=repository,
            seen=seen_tags,
            digest_of=digest_of,
            complete=complete,
            unknown=failed_refs,
            gone=gone,
            scan=scan,
            now=now,
        )
        gained, lost = _presence_refresh(repository_id=repository.id, now=now)
        figures_apply(
            registry_id=repository.registry_id, repository_id=repository.id, gained=gained, lost=lost
        )
        if events or gained or lost:
            # the registry's materialized answers read tags, their moves and holdings: no longer
            # current (the row figures_apply has just locked, taken in the same order)
            content_version_bump(registry_id=repository.registry_id)
        # after the figures, whose upserts take the registry's rows in their order (no deadlock)
        registry_held_add(
            registry_id=repository.registry_id, tags=_current_tags(repository_id=repository.id) - tags_before
        )
        images = sum(
            1 for r in snapshot.manifests if isinstance(r, ImageRecord) and _image_kind(r) == "image"
        )
        recorded = {r.digest for r in snapshot.manifests}
        if complete and any(d not in recorded for d in snapshot.tags.values()):
            # Some tags were not read again (a rescan): what is held now was seen now, children of
            # unchanged indexes included, in one UPDATE; the image count is what the tags hold.
            held = RepositoryManifest.objects.filter(repository=repository, present=True)
            held.filter(last_seen__lt=now).update(last_seen=now)
            images = held.filter(manifest__kind=Manifest.Kind.IMAGE).count()
        if scan is not None and snapshot.failures:
            ScanError.objects.bulk_create(
                [
                    ScanError(
                        scan=scan,
                        repository=repository.name,
                        reference=printable(f.reference)[:255],
                        kind=f.kind[:64],
                        message=printable(f.message),
                    )
                    for f in snapshot.failures
                ]
            )
        if scanned:
            Repository.objects.filter(id=repository.id).update(last_scanned_at=now)
    return IngestResult(
        tags=len(seen_tags),
        images=images,
        manifests=len(ids),
        new_manifests=len(new_digests),
        tag_events=events,
        failures=len(snapshot.failures),
    )
