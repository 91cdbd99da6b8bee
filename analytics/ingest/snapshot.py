"""The write side: turn a `RepositorySnapshot` into rows, idempotently.

Every write is keyed on digests and names under unique constraints, so re-running ingest for the same
snapshot rewrites the same rows, and two workers ingesting repositories that share blobs at the same
time neither fail nor duplicate rows (inserts are ordered by digest and ignore conflicts).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from analytics.infra.sqlarrays import array_literal, int_array
from analytics.infra.text import printable
from analytics.ingest.answers import content_version_bump
from analytics.ingest.figures import figures_apply, registry_held_add
from analytics.ingest.known import known_config_fill, manifest_ids
from analytics.models import (
    Blob,
    Manifest,
    Repository,
    RepositoryManifest,
    Scan,
    ScanError,
    Tag,
)
from workers.registry.records import KIND_ARTIFACT, BlobRecord, ImageRecord, IndexRecord, RepositorySnapshot


def rows_insert(
    table: str,
    columns: tuple[tuple[str, str], ...],
    rows: list[tuple[object, ...]],
    *,
    conflict: str = "",
    returning: str = "",
) -> list[tuple[object, ...]]:
    """Insert `rows` into `table` in one statement, whatever their number: one array per column,
    `unnest`ed in order (`columns` is (name, PostgreSQL type); a `jsonb` column's values are JSON text).
    `conflict` is the ON CONFLICT clause (none: DO NOTHING); `returning` the columns to return, of the
    rows inserted. What `bulk_create` does, without a model instance and a field conversion per value."""
    if not rows:
        return []
    names = ", ".join(name for name, _ in columns)
    arrays = ", ".join(f"%s::{'text' if kind == 'jsonb' else kind}[]" for _, kind in columns)
    picked = ", ".join(f"{name}::jsonb" if kind == "jsonb" else name for name, kind in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({names}) SELECT {picked} FROM unnest({arrays}) AS u({names}) "
            + (conflict or "ON CONFLICT DO NOTHING")
            + (f" RETURNING {returning}" if returning else ""),
            [array_literal(column) for column in zip(*rows, strict=True)],
        )
        return cursor.fetchall() if returning else []


@dataclass(frozen=True)
class IngestResult:
    tags: int
    images: int
    manifests: int
    new_manifests: int
    tag_events: int
    failures: int


def _blob_rows(images: Iterable[ImageRecord]) -> list[BlobRecord]:
    by_digest: dict[str, BlobRecord] = {}
    for image in images:
        for blob in (*([image.config] if image.config else []), *image.layers):
            known = by_digest.get(blob.digest)
            if known is None or (not known.diff_id and blob.diff_id):
                by_digest[blob.digest] = blob
    return [b for _, b in sorted(by_digest.items())]


_BLOB_COLUMNS = (
    ("digest", "text"),
    ("media_type", "text"),
    ("size", "bigint"),
    ("diff_id", "text"),
    ("uncompressed_size", "bigint"),
)


def blobs_upsert(*, images: Iterable[ImageRecord]) -> dict[str, int]:
    """Insert unknown blobs (in digest order, so concurrent writers never deadlock); return id by digest."""
    rows = _blob_rows(images)
    if not rows:
        return {}
    rows_insert(
        "analytics_blob",
        _BLOB_COLUMNS,
        [(b.digest, b.media_type, b.size, b.diff_id or "", b.uncompressed_size) for b in rows],
    )
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

    now = timezone.now()
    new_rows: list[tuple[object, ...]] = []
    for r in records:
        if r.digest in existing:
            continue
        if isinstance(r, ImageRecord):
            new_rows.append(
                (
                    r.digest,
                    r.media_type,
                    _image_kind(r).value,
                    r.size,
                    blob_ids[r.config.digest] if r.config else None,
                    r.platform.os,
                    r.platform.architecture,
                    r.platform.variant,
                    r.platform.os_version,
                    r.created,
                    json.dumps(dict(r.labels)),
                    len(r.layers),
                    sum(layer.size for layer in r.layers),
                    r.artifact_type,
                    r.subject,
                    now,
                )
            )
        else:
            new_rows.append(
                (
                    r.digest,
                    r.media_type,
                    Manifest.Kind.INDEX.value,
                    r.size,
                    None,
                    "",
                    "",
                    "",
                    "",
                    None,
                    "{}",
                    0,
                    0,
                )
                + (r.artifact_type, r.subject, now)
            )
    rows_insert("analytics_manifest", _MANIFEST_COLUMNS, new_rows)
    # Index children known before this snapshot (so not read again) have rows to link entries to.
    children = {c.digest for r in records if isinstance(r, IndexRecord) for c in r.children}
    ids = manifest_ids([*digests, *children])
    new_digests = {row[0] for row in new_rows}

    # Children rows only for manifests this call created; a concurrent writer that created the same
    # manifest writes identical rows, which the unique constraints absorb.
    layers: list[tuple[object, ...]] = []
    history: list[tuple[object, ...]] = []
    entries: list[tuple[object, ...]] = []
    seen_configs: set[int] = set()
    for r in records:
        if r.digest not in new_digests:
            continue
        manifest_id = ids[r.digest]
        if isinstance(r, ImageRecord):
            layers.extend(
                (
                    manifest_id,
                    i,
                    blob_ids[layer.digest],
                    layer.media_type,
                    json.dumps(dict(layer.annotations)),
                    json.dumps(list(layer.urls)),
                )
                for i, layer in enumerate(r.layers)
            )
            # History hangs off the config; schema 1 has none, so there it hangs off the manifest.
            config_id = blob_ids[r.config.digest] if r.config else None
            if config_id is None or config_id not in seen_configs:
                if config_id is not None:
                    seen_configs.add(config_id)
                history.extend(
                    (
                        config_id,
                        manifest_id if config_id is None else None,
                        i,
                        h.created,
                        h.created_by,
                        h.comment,
                        h.author,
                        h.empty_layer,
                        h.layer_position,
                    )
                    for i, h in enumerate(r.history)
                )
        else:
            for i, child in enumerate(r.children):
                if child.digest not in ids:
                    continue  # a child that failed to read; the failure is on the scan
                entries.append(
                    (
                        manifest_id,
                        i,
                        ids[child.digest],
                        child.platform.os,
                        child.platform.architecture,
                        child.platform.variant,
                        child.media_type,
                        json.dumps(dict(child.annotations)),
                    )
                )
    rows_insert("analytics_manifestlayer", _LAYER_COLUMNS, layers)
    rows_insert("analytics_historyentry", _HISTORY_COLUMNS, history)
    rows_insert("analytics_indexentry", _ENTRY_COLUMNS, entries)
    return ids, new_digests


_MANIFEST_COLUMNS = (
    ("digest", "text"),
    ("media_type", "text"),
    ("kind", "text"),
    ("size", "bigint"),
    ("config_id", "bigint"),
    ("os", "text"),
    ("architecture", "text"),
    ("variant", "text"),
    ("os_version", "text"),
    ("created", "timestamptz"),
    ("labels", "jsonb"),
    ("layer_count", "integer"),
    ("layers_size", "bigint"),
    ("artifact_type", "text"),
    ("subject", "text"),
    ("first_seen", "timestamptz"),
)
_LAYER_COLUMNS = (
    ("manifest_id", "bigint"),
    ("position", "integer"),
    ("blob_id", "bigint"),
    ("media_type", "text"),
    ("annotations", "jsonb"),
    ("urls", "jsonb"),
)
_HISTORY_COLUMNS = (
    ("config_id", "bigint"),
    ("manifest_id", "bigint"),
    ("position", "integer"),
    ("created", "timestamptz"),
    ("created_by", "text"),
    ("comment", "text"),
    ("author", "text"),
    ("empty_layer", "boolean"),
    ("layer_position", "integer"),
)
_ENTRY_COLUMNS = (
    ("index_id", "bigint"),
    ("position", "integer"),
    ("child_id", "bigint"),
    ("os", "text"),
    ("architecture", "text"),
    ("variant", "text"),
    ("media_type", "text"),
    ("annotations", "jsonb"),
)


@dataclass(frozen=True)
class _TagsSeen:
    """One repository's tags as a snapshot found them, for `_tag_changes_record`."""

    repository: Repository
    seen: dict[str, int]  # tag name -> manifest id
    complete: bool
    unknown: set[str]  # tags whose manifest failed to read: neither moved nor gone
    gone: Collection[str]
    scan: Scan | None


def _tag_changes_record(tags_seen: list[_TagsSeen], *, digest_of: dict[int, str], now: datetime) -> list[int]:
    """Create, move and remove the repositories' tags as found, each change a `TagEvent`; the number of
    events of each, in order. Tags new or unchanged are written for all repositories in one statement.
    A tag created, moved or back after removal has its `current_since` set to `now` (its latest event to
    a digest), so the policies read its scan time without its events."""
    repository_ids = [t.repository.id for t in tags_seen]
    current: dict[int, dict[str, Tag]] = {rid: {} for rid in repository_ids}
    for tag in Tag.objects.filter(repository_id__in=repository_ids).select_related("manifest"):
        current[tag.repository_id][tag.name] = tag
    new_tags = [
        (t.repository.id, name, manifest_id, now, now, now)
        for t in tags_seen
        for name, manifest_id in sorted(t.seen.items())
        if name not in current[t.repository.id]
    ]
    created = {(rid, name) for rid, name, *_ in new_tags}
    inserted: dict[tuple[int, str], int] = {}
    if new_tags:
        rows = rows_insert("analytics_tag", _TAG_COLUMNS, new_tags, returning="repository_id, name, id")
        inserted = {(rid, name): tag_id for rid, name, tag_id in rows}  # type: ignore[misc]
        if len(inserted) < len(new_tags):  # a concurrent writer created some: theirs are the same rows
            for tag in Tag.objects.filter(
                repository_id__in=repository_ids, name__in=[name for _, name, *_ in new_tags]
            ):
                if tag.name not in current[tag.repository_id]:
                    current[tag.repository_id][tag.name] = tag
    events: list[tuple[object, ...]] = []  # (tag id, old digest, new digest, seen at, scan id)
    unchanged: list[int] = []
    counts = []
    for t in tags_seen:
        rid, scan_id, before = t.repository.id, (t.scan.id if t.scan is not None else None), len(events)
        for name, manifest_id in t.seen.items():
            if (rid, name) in created:
                tag_id = inserted.get((rid, name)) or current[rid][name].id
                events.append((tag_id, "", digest_of[manifest_id], now, scan_id))
                if (rid, name) not in inserted:  # a concurrent writer's row: this event may be the later
                    Tag.objects.filter(id=tag_id, manifest_id=manifest_id, current_since__lt=now).update(
                        current_since=now
                    )
                continue
            tag = current[rid][name]
            if tag.manifest_id == manifest_id and tag.removed_at is None:
                unchanged.append(tag.id)
                continue
            old = tag.manifest.digest if (tag.manifest and tag.removed_at is None) else ""
            events.append((tag.id, old, digest_of[manifest_id], now, scan_id))
            Tag.objects.filter(id=tag.id).update(
                manifest_id=manifest_id, last_seen=now, current_since=now, removed_at=None
            )
        for name, tag in current[rid].items():
            if name in t.seen or tag.removed_at is not None:
                continue
            if (t.complete and name not in t.unknown) or name in t.gone:
                events.append((tag.id, tag.manifest.digest if tag.manifest else "", "", now, scan_id))
                Tag.objects.filter(id=tag.id).update(removed_at=now)
        counts.append(len(events) - before)
    if unchanged:
        Tag.objects.filter(id__in=unchanged).update(last_seen=now)
    rows_insert("analytics_tagevent", _TAG_EVENT_COLUMNS, events, conflict="ON CONFLICT DO NOTHING")
    return counts


_TAG_COLUMNS = (
    ("repository_id", "bigint"),
    ("name", "text"),
    ("manifest_id", "bigint"),
    ("first_seen", "timestamptz"),
    ("last_seen", "timestamptz"),
    ("current_since", "timestamptz"),
)
_TAG_EVENT_COLUMNS = (
    ("tag_id", "bigint"),
    ("old_digest", "text"),
    ("new_digest", "text"),
    ("seen_at", "timestamptz"),
    ("scan_id", "bigint"),
)


_REACHABLE_SQL = """
WITH RECURSIVE reach(repository_id, manifest_id) AS (
    SELECT repository_id, manifest_id FROM analytics_tag
    WHERE repository_id = ANY(%(repos)s::bigint[]) AND removed_at IS NULL AND manifest_id IS NOT NULL
    UNION
    SELECT reach.repository_id, e.child_id
    FROM analytics_indexentry e JOIN reach ON e.index_id = reach.manifest_id
)
"""


def _presence_refresh(*, repository_ids: list[int], now: datetime) -> dict[int, tuple[set[int], set[int]]]:
    """Held now = reachable from a current tag, through indexes to any depth (UNION stops cycles).

    Derived from the tags rather than from one snapshot, so a one-tag scan, a tag whose manifest
    failed to read this time (it keeps what it held) and a full scan all leave the same answer.
    Returns, per repository, the manifest ids that became held and those no longer held (for
    `analytics.ingest.figures`).
    """
    params = {"repos": int_array(repository_ids), "now": now}
    changes: dict[int, tuple[set[int], set[int]]] = {rid: (set(), set()) for rid in repository_ids}
    with connection.cursor() as cursor:
        cursor.execute(
            _REACHABLE_SQL
            + """
            INSERT INTO analytics_repositorymanifest
                (repository_id, manifest_id, present, first_seen, last_seen)
            SELECT repository_id, manifest_id, TRUE, %(now)s, %(now)s FROM reach
            ON CONFLICT (repository_id, manifest_id)
            DO UPDATE SET present = TRUE WHERE NOT analytics_repositorymanifest.present
            RETURNING repository_id, manifest_id
            """,
            params,
        )
        for rid, manifest_id in cursor.fetchall():
            changes[rid][0].add(manifest_id)
        cursor.execute(
            _REACHABLE_SQL
            + """
            UPDATE analytics_repositorymanifest rm SET present = FALSE
            WHERE rm.repository_id = ANY(%(repos)s::bigint[]) AND rm.present AND NOT EXISTS (
                SELECT 1 FROM reach WHERE reach.repository_id = rm.repository_id
                    AND reach.manifest_id = rm.manifest_id)
            RETURNING rm.repository_id, rm.manifest_id
            """,
            params,
        )
        for rid, manifest_id in cursor.fetchall():
            changes[rid][1].add(manifest_id)
    return changes


def unchanged_record_many(*, expected: dict[int, dict[str, str]], now: datetime) -> dict[int, int]:
    """Rescans that found every tag where it was, in five statements whatever their number:
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


def _current_tags(repository_ids: list[int]) -> dict[int, int]:
    """Tags of each repository naming a manifest now (what `RegistryHeld.tags` counts)."""
    counts = dict(
        Tag.objects.filter(repository_id__in=repository_ids, removed_at=None, manifest__isnull=False)
        .values("repository_id")
        .annotate(n=Count("id"))
        .values_list("repository_id", "n")
        .order_by()
    )
    return {rid: counts.get(rid, 0) for rid in repository_ids}


@dataclass(frozen=True)
class IngestItem:
    """One repository's snapshot to record, with how (`snapshot_ingest`'s arguments)."""

    repository: Repository
    snapshot: RepositorySnapshot
    scan: Scan | None = None
    complete: bool = True
    gone: Collection[str] = frozenset()
    scanned: bool = True


def snapshot_ingest(
    *,
    repository: Repository,
    snapshot: RepositorySnapshot,
    scan: Scan | None = None,
    complete: bool = True,
    gone: Collection[str] = frozenset(),
    scanned: bool = True,
) -> IngestResult:
    """Record what one scan of one repository found: `snapshots_ingest` of one."""
    item = IngestItem(repository, snapshot, scan=scan, complete=complete, gone=gone, scanned=scanned)
    return snapshots_ingest([item])[0]


def _digests_named(snapshot: RepositorySnapshot) -> set[str]:
    """The manifests a snapshot names: those it read, their indexes' children, its tags' targets."""
    named = {r.digest for r in snapshot.manifests} | set(snapshot.tags.values())
    named.update(c.digest for r in snapshot.manifests if isinstance(r, IndexRecord) for c in r.children)
    return named


def snapshots_ingest(items: list[IngestItem]) -> list[IngestResult]:
    """Record what scans of some repositories found, in one transaction, each table written once for
    all of them (a batch of a registry scan's repositories costs a few statements, not a few per
    repository). For each repository:

    1. Blobs, manifests, layers, history and index entries, keyed on digests (new content only).
    2. Which manifests the repository holds now (`RepositoryManifest.present`).
    3. Tags: created, moved or removed, each change a `TagEvent`.
    4. Failures, as `ScanError` rows on the scan.
    5. The maintained figures (`analytics.ingest.figures`), once per registry for all of them.

    An item's `complete` is false when its snapshot covers only some tags (a one-tag scan): then no tag
    the snapshot did not mention is marked gone, but for those in `gone` (the registry said it does not
    have them: a registry event's tags read again). `scanned` is false for what registry events
    brought in: the repository's `last_scanned_at` stays the last scan's. Results are in `items`' order.
    """
    if len({item.repository.id for item in items}) < len(items):
        raise ValueError("one snapshot per repository in a batch")
    now = timezone.now()
    results: dict[int, IngestResult] = {}
    with transaction.atomic():
        # A rescan that found every tag where it was: only last-seen times move (holdings, and with them
        # every maintained figure, are derived from the tags, so nothing else can change).
        maybe = {
            i: item
            for i, item in enumerate(items)
            if item.complete and not item.snapshot.manifests and not item.snapshot.failures
        }
        same = unchanged_record_many(
            expected={item.repository.id: dict(item.snapshot.tags) for item in maybe.values()}, now=now
        )
        for i, item in maybe.items():
            if item.repository.id in same:
                results[i] = IngestResult(
                    tags=len(item.snapshot.tags),
                    images=same[item.repository.id],
                    manifests=0,
                    new_manifests=0,
                    tag_events=0,
                    failures=0,
                )
        todo = [(i, item) for i, item in enumerate(items) if i not in results]
        if todo:
            results.update(_changes_ingest(todo, now=now))
    return [results[i] for i in range(len(items))]


def _claim(unclaimed: set[str], digests: set[str]) -> set[str]:
    claimed = unclaimed & digests
    unclaimed -= claimed
    return claimed


def _changes_ingest(todo: list[tuple[int, IngestItem]], *, now: datetime) -> dict[int, IngestResult]:
    """`snapshots_ingest`'s work for the items that change something (in its transaction)."""
    ids, new_digests = manifests_upsert(records=[r for _, item in todo for r in item.snapshot.manifests])
    # Tags naming a manifest stored before (unchanged, or known from elsewhere) carry no record.
    ids.update(manifest_ids(d for _, item in todo for d in item.snapshot.tags.values() if d not in ids))
    digest_of = {v: k for k, v in ids.items()}
    # each item's manifests stored now: its holdings, and its result's count
    named = {i: {ids[d] for d in _digests_named(item.snapshot) if d in ids} for i, item in todo}
    holdings = [(item.repository.id, m, False, now, now) for i, item in todo for m in sorted(named[i])]
    rows_insert(
        "analytics_repositorymanifest",
        (
            ("repository_id", "bigint"),
            ("manifest_id", "bigint"),
            ("present", "boolean"),
            ("first_seen", "timestamptz"),
            ("last_seen", "timestamptz"),
        ),
        holdings,
        conflict="ON CONFLICT (repository_id, manifest_id) DO UPDATE SET last_seen = excluded.last_seen",
    )
    repository_ids = [item.repository.id for _, item in todo]
    tags_before = _current_tags(repository_ids)
    seen = {
        i: {name: ids[digest] for name, digest in item.snapshot.tags.items() if digest in ids}
        for i, item in todo
    }
    counts = _tag_changes_record(
        [
            _TagsSeen(
                repository=item.repository,
                seen=seen[i],
                complete=item.complete,
                unknown={f.reference for f in item.snapshot.failures},
                gone=item.gone,
                scan=item.scan,
            )
            for i, item in todo
        ],
        digest_of=digest_of,
        now=now,
    )
    events = {i: n for (i, _), n in zip(todo, counts, strict=True)}
    held = _presence_refresh(repository_ids=repository_ids, now=now)
    changes: dict[int, dict[int, tuple[set[int], set[int]]]] = {}  # registry -> repository -> change
    for _, item in todo:
        changes.setdefault(item.repository.registry_id, {})[item.repository.id] = held[item.repository.id]
    tags_after = _current_tags(repository_ids)
    for registry_id in sorted(changes):
        by_repository = changes[registry_id]
        members = [item for _, item in todo if item.repository.registry_id == registry_id]
        figures_apply(
            registry_id=registry_id,
            changes=by_repository,
            names={item.repository.id: item.repository.name for item in members},
        )
        if any(events[i] for i, item in todo if item.repository.registry_id == registry_id) or any(
            gained or lost for gained, lost in by_repository.values()
        ):
            # the registry's materialized answers read tags, their moves and holdings: no longer
            # current (the row figures_apply has just locked, taken in the same order)
            content_version_bump(registry_id=registry_id)
        # after the figures, whose upserts take the registry's rows in their order (no deadlock)
        registry_held_add(
            registry_id=registry_id,
            tags=sum(tags_after[item.repository.id] - tags_before[item.repository.id] for item in members),
        )
    results: dict[int, IngestResult] = {}
    errors: list[ScanError] = []
    unclaimed = set(new_digests)  # a manifest new to Layerlens counts as new for the first one recording it
    for i, item in todo:
        repository, snapshot = item.repository, item.snapshot
        images = sum(
            1 for r in snapshot.manifests if isinstance(r, ImageRecord) and _image_kind(r) == "image"
        )
        recorded = {r.digest for r in snapshot.manifests}
        if item.complete and any(d not in recorded for d in snapshot.tags.values()):
            # Some tags were not read again (a rescan): what is held now was seen now, children of
            # unchanged indexes included, in one UPDATE; the image count is what the tags hold.
            held = RepositoryManifest.objects.filter(repository=repository, present=True)
            held.filter(last_seen__lt=now).update(last_seen=now)
            images = held.filter(manifest__kind=Manifest.Kind.IMAGE).count()
        if item.scan is not None:
            errors += [
                ScanError(
                    scan=item.scan,
                    repository=repository.name,
                    reference=printable(f.reference)[:255],
                    kind=f.kind[:64],
                    message=printable(f.message),
                )
                for f in snapshot.failures
            ]
        results[i] = IngestResult(
            tags=len(seen[i]),
            images=images,
            manifests=len(named[i]),
            new_manifests=len(_claim(unclaimed, {r.digest for r in snapshot.manifests})),
            tag_events=events[i],
            failures=len(snapshot.failures),
        )
    if errors:
        ScanError.objects.bulk_create(errors)
    scanned = sorted(item.repository.id for _, item in todo if item.scanned)
    if scanned:
        Repository.objects.filter(id__in=scanned).update(last_scanned_at=now)
    return results
