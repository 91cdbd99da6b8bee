"""The what-if statement's rows, computed over one registry's columns (`analytics.selectors.columns`).

The same rule as `whatif_statement`, step by step, over arrays: the deleted tags; the repositories they
are in; what those repositories' other tags still reach (their manifests, and index children, to the
bottom); the present holdings not reached (lost); per lost manifest, `n` lost holdings from repositories
`first`..`last`, freed when `n` covers its `RegistryManifestRef.refs`; per blob of a lost manifest, the
lost references summed, freed when they cover its `RegistryBlob.refs`, its owner the one repository whose
lost holdings reached it. It answers the statement's rows ('D', 'L', 'M', 'A', 'P', 'B', 'R', 'K'), so
`whatif.deletion_impact` reads either alike (`columns_rows`: when the columns answer at all); only the
page's names, digests and kinds are read from the database, for the page's rows alone. Tests compare both
on the same selections.
"""

from __future__ import annotations

import numpy as np
from django.db import connection

from analytics.models import RegistryHeld
from analytics.selectors.columns import RegistryColumns, registry_columns
from analytics.selectors.kept import HOLDERS
from analytics.selectors.whatif_statement import KEPT_LARGEST, PRICE_FROM_KEPT_SHARE

_NONE = np.iinfo(np.int64).max


def columns_rows(
    *,
    registry_id: int,
    tag_ids: list[int],
    details: bool,
    by_repository: bool,
    after_r: str,
    after_d: str,
    page: int | None,
) -> list[tuple] | None:
    """The statement's rows over the registry's columns (`whatif_rows`); None when they cannot be had at
    one version, or when some tag is not a current tag of theirs (another registry's, or gone since): the
    statement answers then."""
    # read from the database (seconds at a million images) only for a selection the statement would
    # price no faster: half the registry's current tags or more; else only a kept file
    held = RegistryHeld.objects.filter(registry_id=registry_id).values_list("tags", flat=True).first() or 0
    columns = registry_columns(registry_id=registry_id, read=len(tag_ids) >= PRICE_FROM_KEPT_SHARE * held)
    if columns is None:
        return None
    rows = whatif_rows(
        columns,
        tag_ids=tag_ids,
        details=details,
        by_repository=by_repository,
        kept_largest=KEPT_LARGEST,
        after_r=after_r,
        after_d=after_d,
        page=page,
        holders=HOLDERS,
    )
    return rows if rows[0][1] == len(set(tag_ids)) else None


def repository_names(ids) -> dict[int, str]:
    """Repository names by id (one array parameter, not a placeholder per repository)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, name FROM analytics_repository WHERE id = ANY(%s)", [list(ids)])
        return dict(cursor.fetchall())


def _manifests_about(ids) -> dict[int, tuple[str, str]]:
    """(digest, kind) of manifests by id."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, digest, kind FROM analytics_manifest WHERE id = ANY(%s)", [list(ids)])
        return {i: (d, k) for i, d, k in cursor.fetchall()}


def holders_found(rows) -> dict[tuple[int, int], list[tuple]]:
    """The kept blobs' holders the columns read ('H' rows), as `kept.holders_named` takes them."""
    found: dict[tuple[int, int], list[tuple]] = {}
    for _, registry_id, blob_id, repository, digest, kind, repository_id, manifest_id, *_ in (
        r for r in rows if r[0] == "H"
    ):
        found.setdefault((registry_id, blob_id), []).append(
            (repository, digest, kind, repository_id, manifest_id)
        )
    return found


def deleted_tags_reach(
    repositories: np.ndarray, tag_ids: np.ndarray, *, limit: int | None, after: tuple[str, str] | None
) -> list[int]:
    """Of the deleted tags (the 'T' row's arrays), those of the repositories a page of `limit` after
    `after` can reach, in the page's order (the database's, by name): each repository's count adds up,
    but the first one's (its tags after the key are not known here), until a page and one are had."""
    if limit is None:
        return tag_ids.tolist()
    order = np.argsort(repositories, kind="stable")
    repositories, tag_ids = repositories[order], tag_ids[order]
    ids, starts, counts = np.unique(repositories, return_index=True, return_counts=True)
    at = {int(r): (int(s), int(n)) for r, s, n in zip(ids, starts, counts, strict=True)}
    repo = (after or ("", ""))[0]
    with connection.cursor() as cursor:  # ordered by name as the page is (the database's collation)
        cursor.execute(
            "SELECT id, name FROM analytics_repository WHERE id = ANY(%s) AND name >= %s ORDER BY name",
            [list(at), repo],
        )
        ordered = cursor.fetchall()
    reach, count = [], 0
    for repository_id, name in ordered:
        if count > limit:
            break
        start, n = at[repository_id]
        reach += tag_ids[start : start + n].tolist()
        count += n if name != repo else 0
    return reach


def _distinct(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values (by a sort: numpy's hashing unique is several times slower here)."""
    ordered = np.sort(values)
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))] if len(ordered) else ordered


def _keys(repository: np.ndarray, manifest: np.ndarray) -> np.ndarray:
    return (repository.astype(np.int64) << 32) | manifest.astype(np.int64)


def _reached(c: RegistryColumns, kept: np.ndarray) -> np.ndarray:
    """The (repository, manifest) keys the kept tags reach: their manifests and, in the same repository,
    every index's children, down to the last level."""
    repository, manifest = c.tag_repository[kept], c.tag_manifest[kept]
    reach = _distinct(_keys(repository, manifest))
    if not len(c.entry_index):
        return reach
    order = np.argsort(c.entry_index, kind="stable")
    parents, children = c.entry_index[order], c.entry_child[order]
    frontier = reach
    while len(frontier):
        repos, manifests = frontier >> 32, frontier & 0xFFFFFFFF
        lo, hi = np.searchsorted(parents, manifests, "left"), np.searchsorted(parents, manifests, "right")
        has = hi > lo
        if not has.any():
            break
        counts = (hi - lo)[has]
        starts = np.repeat(lo[has], counts) + (
            np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        found = _distinct(_keys(np.repeat(repos[has], counts), children[starts]))
        frontier = found[~np.isin(found, reach, assume_unique=True)]
        reach = np.union1d(reach, frontier)
    return reach


def whatif_rows(
    c: RegistryColumns,
    *,
    tag_ids: list[int],
    details: bool,
    by_repository: bool,
    kept_largest: int,
    after_r: str,
    after_d: str,
    page: int | None,
    holders: int = 0,
) -> list[tuple]:
    """The statement's rows for deleting `tag_ids` (those of this registry, current), at the columns'
    version; with `details`, one 'T' row besides: the deleted tags' repositories and ids (arrays), which
    narrow the page of deleted tags; with `by_repository`, 'H' rows: up to `holders` holdings the
    deletion leaves of each largest kept blob, (registry, blob, repository name, digest, kind, repository
    id, manifest id), the first by repository and manifest id."""
    deleted = np.isin(c.tag_id, np.asarray(tag_ids, dtype=np.int64))
    affected = _distinct(c.tag_repository[deleted])
    kept = ~deleted & np.isin(c.tag_repository, affected)
    reach = _reached(c, kept)
    in_affected = np.isin(c.holding_repository, affected)
    lost = in_affected & ~np.isin(_keys(c.holding_repository, c.holding_manifest), reach)
    lost_r, lost_m = c.holding_repository[lost], c.holding_manifest[lost]

    manifests = len(c.manifest_id)
    n = np.bincount(lost_m, minlength=manifests)
    first = np.full(manifests, _NONE, dtype=np.int64)
    np.minimum.at(first, lost_m, lost_r)
    last = np.full(manifests, -1, dtype=np.int64)
    np.maximum.at(last, lost_m, lost_r)
    judged = np.nonzero(n)[0]
    m_freed = judged[c.manifest_refs[judged] <= n[judged]]
    m_kept = judged[c.manifest_refs[judged] > n[judged]]
    m_shared = m_freed[first[m_freed] != last[m_freed]]
    freed_manifest = np.zeros(manifests, dtype=bool)
    freed_manifest[m_freed] = True
    size = c.manifest_size

    # the lost manifests' blobs: references summed per blob (each manifest lists a blob once)
    on = n[c.pair_manifest] > 0
    pm, pb = c.pair_manifest[on], c.pair_blob[on]
    blobs = len(c.blob_id)
    lost_refs = np.zeros(blobs, dtype=np.int64)
    np.add.at(lost_refs, pb, n[pm])
    b_first = np.full(blobs, _NONE, dtype=np.int64)
    np.minimum.at(b_first, pb, first[pm])
    b_last = np.full(blobs, -1, dtype=np.int64)
    np.maximum.at(b_last, pb, last[pm])
    touched = np.nonzero(lost_refs)[0]
    freed_b = touched[c.blob_refs[touched] <= lost_refs[touched]]
    kept_b = touched[c.blob_refs[touched] > lost_refs[touched]]
    unowned = freed_b[b_first[freed_b] != b_last[freed_b]]
    owned = freed_b[b_first[freed_b] == b_last[freed_b]]
    bsize = c.blob_size

    rows: list[tuple] = [
        ("D", int(deleted.sum()), None, None, None, None, None, None, None, None),
        ("L", int(lost.sum()), None, None, None, None, None, None, None, None),
        (
            "M",
            len(m_freed),
            int(size[m_freed].sum()),
            len(m_kept),
            int(size[m_kept].sum()),
            len(m_shared),
            int(size[m_shared].sum()),
            None,
            None,
            None,
        ),
        (
            "B",
            len(freed_b),
            int(bsize[freed_b].sum()),
            len(kept_b),
            int(bsize[kept_b].sum()),
            len(unowned),
            int(bsize[unowned].sum()),
            None,
            None,
            None,
        ),
    ]
    if details:
        rows += [("A", int(r), None, None, None, None, None, None, None, None) for r in affected]
        rows.append(("T", c.tag_repository[deleted], c.tag_id[deleted]))
        rows += _page(c, lost_r, lost_m, size, freed_manifest, after_r, after_d, page)
    if by_repository:
        rows += _parts(c, deleted, lost_r, m_freed, first, last, size, owned, b_first, bsize)
        kept_by = c.blob_refs[kept_b] - lost_refs[kept_b]
        # largest first, then most holdings keeping it, then the highest ids (the statement's order)
        order = np.lexsort((-c.blob_id[kept_b], -kept_by, -bsize[kept_b]))[:kept_largest]
        rows += [
            ("K", c.registry_id, int(c.blob_id[kept_b][i]), int(bsize[kept_b][i]), int(kept_by[i]))
            + (None,) * 5
            for i in order
        ]
        rows += _holders(c, kept_b[order], lost, holders)
    return rows


def _holders(c: RegistryColumns, blobs: np.ndarray, lost: np.ndarray, most: int) -> list[tuple]:
    """Up to `most` holdings the deletion leaves of each blob (positions), with their names."""
    if not len(blobs) or not most:
        return []
    left = ~lost
    found = []
    for b in blobs.tolist():
        manifests = c.pair_manifest[c.pair_blob == b]
        held = np.nonzero(left & np.isin(c.holding_manifest, manifests))[0]
        order = np.lexsort((c.holding_manifest[held], c.holding_repository[held]))[:most]
        found += [(b, int(c.holding_repository[held][i]), int(c.holding_manifest[held][i])) for i in order]
    if not found:
        return []
    names = repository_names({r for _, r, _ in found})
    about = _manifests_about({int(c.manifest_id[m]) for _, _, m in found})
    return [
        (
            "H",
            c.registry_id,
            int(c.blob_id[b]),
            names[r],
            *about[int(c.manifest_id[m])],
            r,
            int(c.manifest_id[m]),
        )
        for b, r, m in found
    ]


def _parts(c, deleted, lost_r, m_freed, first, last, size, owned, b_first, bsize) -> list[tuple]:
    """Per repository: tags deleted, holdings lost, manifests and blobs freed that it alone lost, and
    their bytes: each a count (and a sum) per repository, over every repository with any of them."""
    alone = m_freed[first[m_freed] == last[m_freed]]
    parts = [
        (c.tag_repository[deleted], None),
        (lost_r, None),
        (first[alone], size[alone]),
        (b_first[owned], bsize[owned]),
    ]
    ids = _distinct(np.concatenate([r for r, _ in parts]))
    columns = []
    freed = np.zeros(len(ids), dtype=np.int64)
    for repositories, values in parts:
        at = np.searchsorted(ids, repositories)
        columns.append(np.bincount(at, minlength=len(ids)).tolist())
        if values is not None:  # whole bytes: np.add.at, not float weights
            np.add.at(freed, at, values)
    return [("R", *row, None, None, None) for row in zip(ids.tolist(), *columns, freed.tolist(), strict=True)]


def _page(
    c, lost_r, lost_m, size, freed_manifest, after_r: str, after_d: str, page: int | None
) -> list[tuple]:
    """A page of lost holdings in (repository name, digest) order, bytewise as COLLATE "C": the
    repositories it can reach first (by name, after the page's start), then their holdings' digests."""
    repositories = _distinct(lost_r)
    per = np.bincount(np.searchsorted(repositories, lost_r))
    names = repository_names(repositories.tolist())
    start = after_r.encode()
    ranked = sorted((names[r].encode(), r) for r in repositories.tolist() if names[r].encode() >= start)
    per_repository = dict(zip(repositories.tolist(), per.tolist(), strict=True))
    chosen, before = [], 0
    for name, r in ranked:
        if page is not None and before >= page:
            break
        chosen.append(r)
        before += int(per_repository[r]) if name > start else 0
    rows = np.isin(lost_r, chosen)
    ids = c.manifest_id[lost_m[rows]]
    about = _manifests_about(_distinct(ids).tolist())
    key = (start, after_d.encode())
    found = sorted(
        ((names[int(r)].encode(), about[int(i)][0].encode()), int(r), int(m))
        for r, m, i in zip(lost_r[rows], lost_m[rows], ids, strict=True)
    )
    found = [f for f in found if f[0] > key]
    if page is not None:
        found = found[:page]
    return [
        (
            "P",
            r,
            int(c.manifest_id[m]),
            int(size[m]),
            int(freed_manifest[m]),
            None,
            None,
            names[r],
            about[int(c.manifest_id[m])][0],
            about[int(c.manifest_id[m])][1],
        )
        for (_, r, m) in found
    ]
