"""A registry's columns: what the what-if reads of one registry, as numpy arrays, at one content version.

The what-if statement walks every reference of every lost manifest; deleting most tags of a registry of a
million images walks six million rows, twenty seconds of hash joins. The same judgement over arrays
(`analytics.selectors.whatif_columns`) takes under a second, so a large selection reads these instead:

- the current tags (id, repository, manifest), the present holdings (repository, manifest), the index
  entries below the manifests held or tagged, to the bottom (index, child);
- the manifests held: their `RegistryManifestRef.refs` and size;
- each held manifest's distinct blobs (`ManifestBlob`), and each of those blobs' `RegistryBlob.refs` and
  size (the blob's own when the registry has no row for it, as the statement does).

Manifests and blobs are positions in sorted id arrays, so the arrays stay dense whatever the ids.

They are read from PostgreSQL at the registry's content version (`ScopeFigures.content_version`, moved in
the transaction of every write to tags, holdings and their figures), read before and after: when both
reads agree, no such write committed in between, so every array is of that version (else the read is
given up and the statement answers). Reading them costs twenty seconds at a million images (loading the
kept file, under one), so they are read at a scan's end (`columns_keep`, for a registry with
`WHATIF_COLUMNS_TAGS` current tags or more) and by a what-if deleting half of a registry's tags or more
(which the statement would price no faster), and kept in `WHATIF_COLUMNS_DIR`: one file per registry,
named by the database (its cluster's system identifier and the database's oid: a database dropped and
created again is another) and the version. A file of another version is never read, and writing a
registry's file removes its older ones.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

_VERSION_SQL = """SELECT content_version FROM analytics_scopefigures
WHERE registry_id = %s AND repository_id IS NULL"""

_IDENTITY_SQL = """SELECT (SELECT system_identifier FROM pg_control_system()),
    (SELECT oid FROM pg_database WHERE datname = current_database())"""

# Each a query of int8 columns over the registry (%(registry)s), read with COPY in binary. Reading is
# the cost (COPY sends about a million rows a second here): each reads the maintained rows it can.
_TAGS = """SELECT t.id, t.repository_id::int8, t.manifest_id::int8
FROM analytics_tag t JOIN analytics_repository r ON r.id = t.repository_id
WHERE r.registry_id = %(registry)s AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL"""
_HOLDINGS = """SELECT rm.repository_id::int8, rm.manifest_id::int8
FROM analytics_repositorymanifest rm JOIN analytics_repository r ON r.id = rm.repository_id
WHERE r.registry_id = %(registry)s AND rm.present"""
# the manifests the registry holds: RegistryManifestRef counts the repositories holding each
_HELD = """SELECT x.manifest_id FROM analytics_registrymanifestref x
WHERE x.registry_id = %(registry)s AND x.refs > 0"""
# every index entry below a manifest held or tagged, to the bottom (a tag reaches an index's children, and
# theirs, whether or not the registry holds them)
_ENTRIES_CTE = f"""WITH RECURSIVE roots AS (
    {_HELD}
    UNION SELECT t.manifest_id FROM analytics_tag t JOIN analytics_repository r ON r.id = t.repository_id
    WHERE r.registry_id = %(registry)s AND t.removed_at IS NULL AND t.manifest_id IS NOT NULL
),
entries(index_id, child_id) AS (
    SELECT e.index_id, e.child_id FROM analytics_indexentry e
    WHERE e.index_id IN (SELECT manifest_id FROM roots)
    UNION
    SELECT e.index_id, e.child_id FROM entries x JOIN analytics_indexentry e ON e.index_id = x.child_id
)
"""
# the manifests held, with their counts, then those only a tag or an index entry names (none held)
_MANIFESTS = f"""{_ENTRIES_CTE}
SELECT x.manifest_id::int8, x.refs::int8, m.size::int8
FROM analytics_registrymanifestref x JOIN analytics_manifest m ON m.id = x.manifest_id
WHERE x.registry_id = %(registry)s AND x.refs > 0
UNION ALL
SELECT m.id::int8, 0::int8, m.size::int8 FROM analytics_manifest m
WHERE m.id IN (SELECT manifest_id FROM roots UNION SELECT child_id FROM entries) AND NOT EXISTS (
    SELECT 1 FROM analytics_registrymanifestref x
    WHERE x.registry_id = %(registry)s AND x.manifest_id = m.id AND x.refs > 0)"""
_ENTRIES = f"""{_ENTRIES_CTE}
SELECT index_id::int8, child_id::int8 FROM entries"""
_PAIRS = f"""SELECT mb.manifest_id::int8, mb.blob_id::int8 FROM analytics_manifestblob mb
WHERE mb.manifest_id IN ({_HELD})"""
# the blobs the registry holds (RegistryBlob copies each one's size); a held manifest's blob without a row
# is read from the blob's own (`_BLOBS_MISSING`), with no reference, as the statement reads it
_BLOBS = """SELECT rb.blob_id::int8, rb.refs::int8, rb.size::int8 FROM analytics_registryblob rb
WHERE rb.registry_id = %(registry)s AND rb.refs > 0"""
_BLOBS_MISSING = """SELECT b.id, 0::int8, b.size::int8 FROM analytics_blob b WHERE b.id = ANY(%s)"""


@dataclass(frozen=True)
class RegistryColumns:
    registry_id: int
    version: int
    tag_id: np.ndarray
    tag_repository: np.ndarray
    tag_manifest: np.ndarray  # position in manifest_id
    holding_repository: np.ndarray
    holding_manifest: np.ndarray  # position in manifest_id
    manifest_id: np.ndarray  # sorted
    manifest_refs: np.ndarray  # RegistryManifestRef.refs: repositories holding it
    manifest_size: np.ndarray
    pair_manifest: np.ndarray  # position in manifest_id
    pair_blob: np.ndarray  # position in blob_id
    blob_id: np.ndarray  # sorted
    blob_refs: np.ndarray  # RegistryBlob.refs: present holdings referencing it
    blob_size: np.ndarray
    entry_index: np.ndarray  # positions in manifest_id
    entry_child: np.ndarray


_ARRAYS = [f.name for f in fields(RegistryColumns) if f.name not in ("registry_id", "version")]


def _copy(cursor, sql: str, params: dict, width: int) -> list[np.ndarray]:
    """The query's `width` int8 columns, read with COPY (binary: a 2-byte field count per row, then each
    field's 4-byte length and 8 bytes, big-endian), as int64 arrays."""
    # COPY takes no parameters: the only one is the registry's id, a whole number
    query = sql.replace("%(registry)s", str(int(params["registry"])))
    data = bytearray()
    with cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as copy:
        for chunk in copy:
            data += chunk
    body = memoryview(data)[19:-2]  # the 19-byte header (no extension) and the 2-byte trailer
    row = np.dtype(
        [("n", ">i2")] + [(f"{k}{i}", t) for i in range(width) for k, t in (("l", ">i4"), ("v", ">i8"))]
    )
    rows = np.frombuffer(body, dtype=row)
    if (rows["n"] != width).any() or any((rows[f"l{i}"] != 8).any() for i in range(width)):
        raise ValueError("a column read is not a non-null int8")
    return [rows[f"v{i}"].astype(np.int64) for i in range(width)]


def _sorted(ids: np.ndarray, *columns: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(ids, kind="stable")
    return [ids[order], *(c[order] for c in columns)]


def _absent(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The distinct `ids` not in `sorted_ids`."""
    at = np.minimum(np.searchsorted(sorted_ids, ids), max(len(sorted_ids) - 1, 0))
    absent = ids[(sorted_ids[at] != ids)] if len(sorted_ids) else ids
    return np.sort(np.array(list(set(absent.tolist())), dtype=np.int64))


def _position(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Each id's position in `sorted_ids` (int32: half an id's bytes, kept and loaded)."""
    at = np.searchsorted(sorted_ids, ids)
    if len(ids) and (
        (at >= len(sorted_ids)).any() or (sorted_ids[np.minimum(at, len(sorted_ids) - 1)] != ids).any()
    ):
        raise ValueError("an id read is missing from its table's column")
    return at.astype(np.int32)


def columns_read(*, registry_id: int) -> RegistryColumns | None:
    """The registry's columns from the database, or None when a write moved its content version while
    they were read (or it has none)."""
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor  # psycopg's, for COPY
        cursor.execute(_VERSION_SQL, [registry_id])
        row = cursor.fetchone()
        if row is None or row[0] is None:
            return None
        version = row[0]
        p = {"registry": registry_id}
        tag_id, tag_repository, tag_manifest = _copy(cursor, _TAGS, p, 3)
        holding_repository, holding_manifest = _copy(cursor, _HOLDINGS, p, 2)
        manifest_id, manifest_refs, manifest_size = _sorted(*_copy(cursor, _MANIFESTS, p, 3))
        pair_manifest, pair_blob = _copy(cursor, _PAIRS, p, 2)
        blob_id, blob_refs, blob_size = _sorted(*_copy(cursor, _BLOBS, p, 3))
        missing = _absent(blob_id, pair_blob)
        if len(missing):
            cursor.execute(_BLOBS_MISSING, [missing.tolist()])
            extra = np.array(cursor.fetchall(), dtype=np.int64).reshape(-1, 3).T
            blob_id, blob_refs, blob_size = _sorted(
                *(np.concatenate((a, b)) for a, b in zip((blob_id, blob_refs, blob_size), extra, strict=True))
            )
        entry_index, entry_child = _copy(cursor, _ENTRIES, p, 2)
        cursor.execute(_VERSION_SQL, [registry_id])
        if cursor.fetchone()[0] != version:
            return None
    return RegistryColumns(
        registry_id=registry_id,
        version=version,
        tag_id=tag_id,
        tag_repository=tag_repository,
        tag_manifest=_position(manifest_id, tag_manifest),
        holding_repository=holding_repository,
        holding_manifest=_position(manifest_id, holding_manifest),
        manifest_id=manifest_id,
        manifest_refs=manifest_refs,
        manifest_size=manifest_size,
        pair_manifest=_position(manifest_id, pair_manifest),
        pair_blob=_position(blob_id, pair_blob),
        blob_id=blob_id,
        blob_refs=blob_refs,
        blob_size=blob_size,
        entry_index=_position(manifest_id, entry_index),
        entry_child=_position(manifest_id, entry_child),
    )


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute(_IDENTITY_SQL)
        system, oid = cursor.fetchone()
    return f"{system}-{oid}"


def _path(database: str, registry_id: int, version: int) -> Path:
    return Path(settings.WHATIF_COLUMNS_DIR) / f"{database}-r{registry_id}-v{version}.npz"


def _current_version(registry_id: int) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(_VERSION_SQL, [registry_id])
        row = cursor.fetchone()
    return None if row is None else row[0]


def _load(path: Path, registry_id: int, version: int) -> RegistryColumns | None:
    try:
        with np.load(path) as data:
            return RegistryColumns(registry_id=registry_id, version=version, **{a: data[a] for a in _ARRAYS})
    except (OSError, KeyError, ValueError):  # gone meanwhile, or a file not ours: read again
        return None


def _store(columns: RegistryColumns, database: str) -> None:
    directory = Path(settings.WHATIF_COLUMNS_DIR)
    target = _path(database, columns.registry_id, columns.version)
    temporary = None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # written whole under another name, then renamed: a reader sees no file or the whole file
        handle, temporary = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(handle, "wb") as out:
            np.savez(out, **{a: getattr(columns, a) for a in _ARRAYS})
        os.replace(temporary, target)
    except OSError:  # a read-only or full disk: these columns serve this answer alone
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        logger.warning(
            "the what-if's columns of registry %s could not be kept in %s", columns.registry_id, directory
        )
        return
    for older in directory.glob(f"{database}-r{columns.registry_id}-v*.npz"):
        if older != target:
            older.unlink(missing_ok=True)


def registry_columns(*, registry_id: int, read: bool = True) -> RegistryColumns | None:
    """The registry's columns at its current content version: its kept file, else (with `read`) read and
    kept; None when there is none to load and none read, when it has no version yet, or when writes kept
    moving it while they were read."""
    version = _current_version(registry_id)
    if version is None:
        return None
    database = _database()
    path = _path(database, registry_id, version)
    if path.exists():
        loaded = _load(path, registry_id, version)
        if loaded is not None:
            return loaded
    if not read:
        return None
    columns = columns_read(registry_id=registry_id)
    if columns is None:
        return None
    _store(columns, database)
    return columns


def columns_keep(*, registry_id: int) -> bool:
    """Read and keep the registry's columns at its current version, when it has `WHATIF_COLUMNS_TAGS`
    current tags or more (a scan's end: the next large preview loads them rather than read them); whether
    they are kept now."""
    if not settings.WHATIF_COLUMNS_TAGS:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT tags FROM analytics_registryheld WHERE registry_id = %s", [registry_id])
        row = cursor.fetchone()
    if row is None or row[0] < settings.WHATIF_COLUMNS_TAGS:
        return False
    return registry_columns(registry_id=registry_id) is not None
