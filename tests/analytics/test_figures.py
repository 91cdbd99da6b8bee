"""Maintained figures (`analytics.ingest.figures`) equal a from-scratch recomputation after every change.

The oracle is written here in plain SQL over the holdings (and `dedup_summary_computed`, the
original report query), never through the delta code under test.
"""

import dataclasses

import pytest
from django.db import connection

from analytics.ingest.rebuild import figures_rebuild
from analytics.ingest.snapshot import IngestItem, snapshot_ingest, snapshots_ingest
from analytics.models import (
    Blob,
    NamespaceBlob,
    NamespaceFigures,
    NamespaceManifestRef,
    Registry,
    RegistryBlob,
    RegistryManifestRef,
    Repository,
    RepositoryBlob,
    ScopeFigures,
)
from analytics.selectors.content import bytes_by_instruction
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary, dedup_summary_computed
from harness.records import image, index, layer, snapshot
from workers.registry.records import KIND_ARTIFACT

BASE = [layer("base-1", 28_000_000), layer("base-2", 2000)]
WEB1 = image("web1", [*BASE, layer("web1", 300)])
WEB2 = image("web2", [*BASE, layer("web2", 310)])
API = image("api", [*BASE, layer("api", 400)])
ARM = image("api-arm", [layer("arm-base", 900), layer("api", 400)], arch="arm64")
MULTI = index("api-multi", [API, ARM])
SIG = dataclasses.replace(image("sig", [layer("sig", 50)]), kind=KIND_ARTIFACT)
DUP = image("dup", [BASE[0], BASE[0], layer("dup", 7)])  # one layer listed twice


def _expected_blob_counts(registry_id):
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH held AS (
                SELECT rm.repository_id, m.id, m.kind, m.config_id FROM analytics_repositorymanifest rm
                JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
                JOIN analytics_manifest m ON m.id = rm.manifest_id WHERE rm.present
            ),
            refs AS (
                SELECT h.repository_id, h.id, h.kind, ml.blob_id, TRUE AS is_layer
                FROM held h JOIN analytics_manifestlayer ml ON ml.manifest_id = h.id
                UNION SELECT h.repository_id, h.id, h.kind, h.config_id, FALSE FROM held h
                WHERE h.config_id IS NOT NULL
            )
            SELECT blob_id, count(DISTINCT (repository_id, id)),
                count(DISTINCT (repository_id, id)) FILTER (WHERE is_layer),
                count(DISTINCT (repository_id, id)) FILTER (WHERE is_layer AND kind = 'image'),
                count(DISTINCT repository_id) FILTER (WHERE is_layer AND kind = 'image')
            FROM refs GROUP BY blob_id ORDER BY blob_id
            """,
            [registry_id],
        )
        return [row for row in cursor.fetchall() if row[1] > 0]


def _expected_repository_blobs(registry_id):
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT rm.repository_id, ml.blob_id, count(DISTINCT rm.manifest_id)
               FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
               JOIN analytics_manifest m ON m.id = rm.manifest_id AND m.kind = 'image'
               JOIN analytics_manifestlayer ml ON ml.manifest_id = m.id
               WHERE rm.present GROUP BY 1, 2 ORDER BY 1, 2""",
            [registry_id],
        )
        return cursor.fetchall()


def _maintained(registry_id):
    blobs = list(
        RegistryBlob.objects.filter(registry_id=registry_id)
        .order_by("blob_id")
        .values_list("blob_id", "refs", "layer_refs", "images", "repositories")
    )
    repo_blobs = list(
        RepositoryBlob.objects.filter(repository__registry_id=registry_id)
        .order_by("repository_id", "blob_id")
        .values_list("repository_id", "blob_id", "images")
    )
    manifests = dict(
        RegistryManifestRef.objects.filter(registry_id=registry_id).values_list("manifest_id", "refs")
    )
    return blobs, repo_blobs, manifests


def _expected_namespaces(registry_id):
    """(namespace, blob, refs, layer_refs) and (namespace, manifest, refs), prefixes split in Python."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT r.name, rm.manifest_id, ml.blob_id, TRUE FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
               JOIN analytics_manifestlayer ml ON ml.manifest_id = rm.manifest_id WHERE rm.present
               UNION
               SELECT r.name, rm.manifest_id, m.config_id, FALSE FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
               JOIN analytics_manifest m ON m.id = rm.manifest_id
               WHERE rm.present AND m.config_id IS NOT NULL""",
            [registry_id, registry_id],
        )
        refs = cursor.fetchall()
        cursor.execute(
            """SELECT r.name, rm.manifest_id FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
               WHERE rm.present""",
            [registry_id],
        )
        held = cursor.fetchall()

    def prefixes(name):
        parts = name.split("/")
        return ["/".join(parts[:i]) for i in range(1, len(parts))]

    holders, layer_holders, manifest_refs = {}, {}, {}
    for name, manifest, blob, is_layer in refs:
        for ns in prefixes(name):
            holders.setdefault((ns, blob), set()).add((name, manifest))
            if is_layer:
                layer_holders.setdefault((ns, blob), set()).add((name, manifest))
    for name, manifest in held:
        for ns in prefixes(name):
            manifest_refs[(ns, manifest)] = manifest_refs.get((ns, manifest), 0) + 1
    blobs = sorted((ns, b, len(h), len(layer_holders.get((ns, b), ()))) for (ns, b), h in holders.items())
    return blobs, sorted((ns, m, n) for (ns, m), n in manifest_refs.items())


def _assert_namespaces_consistent(registry):
    expected_blobs, expected_manifests = _expected_namespaces(registry.id)
    assert expected_blobs == sorted(
        NamespaceBlob.objects.filter(registry=registry).values_list(
            "namespace", "blob_id", "refs", "layer_refs"
        )
    )
    assert expected_manifests == sorted(
        NamespaceManifestRef.objects.filter(registry=registry).values_list("namespace", "manifest_id", "refs")
    )
    namespaces = {ns for ns, *_ in expected_manifests}
    rows = NamespaceFigures.objects.filter(registry=registry)
    assert set(rows.values_list("namespace", flat=True)) == namespaces  # none left for an emptied one
    for ns in namespaces | {"nothing-here"}:
        scope = Scope(registry_id=registry.id, namespace=ns)
        assert dedup_summary(scope=scope) == dedup_summary_computed(scope=scope), ns


def _expected_history(registry_id):
    """Build history from the holdings, in Python: each layer's line from its oldest manifest with a
    history entry at its position, holders counted per present holding."""
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT DISTINCT rm.id, ml.blob_id, b.size FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
               JOIN analytics_manifestlayer ml ON ml.manifest_id = rm.manifest_id
               JOIN analytics_blob b ON b.id = ml.blob_id WHERE rm.present""",
            [registry_id],
        )
        holders, sizes = {}, {}
        for holding, blob, size in cursor.fetchall():
            holders.setdefault(blob, set()).add(holding)
            sizes[blob] = size
        cursor.execute(
            """SELECT ml.blob_id, ml.manifest_id, ml.position, h.created_by FROM analytics_manifestlayer ml
               JOIN analytics_manifest m ON m.id = ml.manifest_id
               JOIN analytics_historyentry h ON h.config_id = m.config_id AND h.layer_position = ml.position
               WHERE ml.blob_id = ANY(%s)""",
            [list(holders)],
        )
        lines = {}
        for blob, _manifest, _position, line in sorted(cursor.fetchall()):
            lines.setdefault(blob, line)
    out = {}
    for blob, hs in holders.items():
        row = out.setdefault(lines.get(blob, ""), [0, 0, 0, 0])
        row[0] += 1
        row[1] += sizes[blob]
        row[2] += sizes[blob] if len(hs) == 1 else 0
        row[3] += sizes[blob] * len(hs)
    return {line: tuple(v) for line, v in out.items()}


def _assert_history_consistent(registry):
    got = bytes_by_instruction(scope=Scope(registry_id=registry.id), limit=10_000)
    assert {i.created_by: (i.layers, i.stored_bytes, i.unique_bytes, i.logical_bytes) for i in got} == (
        _expected_history(registry.id)
    )
    assert [i.stored_bytes for i in got] == sorted((i.stored_bytes for i in got), reverse=True)
    # the from-scratch query (any other scope) agrees
    computed = bytes_by_instruction(
        scope=Scope(registry_id=registry.id, include_untagged=False, tag_glob="*"), limit=10_000
    )
    assert sorted(got, key=str) == sorted(computed, key=str)


def _assert_consistent(registry):
    _assert_namespaces_consistent(registry)
    _assert_history_consistent(registry)
    blobs, repo_blobs, manifests = _maintained(registry.id)
    assert blobs == _expected_blob_counts(registry.id)
    assert repo_blobs == _expected_repository_blobs(registry.id)
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT rm.manifest_id, count(*) FROM analytics_repositorymanifest rm
               JOIN analytics_repository r ON r.id = rm.repository_id AND r.registry_id = %s
               WHERE rm.present GROUP BY 1""",
            [registry.id],
        )
        assert manifests == dict(cursor.fetchall())
    scopes = [Scope(registry_id=registry.id)] + [
        Scope(repository_id=r.id)
        for r in Repository.objects.filter(registry=registry)
        if ScopeFigures.objects.filter(repository=r).exists()
    ]
    for scope in scopes:
        assert dedup_summary(scope=scope) == dedup_summary_computed(scope=scope), scope


@pytest.fixture
def registry(db):
    return Registry.objects.create(name="local", url="http://127.0.0.1:5000")


def test_maintained_figures_follow_ingest_rescans_and_tag_moves(registry):
    web = Repository.objects.create(registry=registry, name="apps/web")
    api = Repository.objects.create(registry=registry, name="apps/api")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "latest": WEB1}))
    _assert_consistent(registry)
    assert RegistryBlob.objects.get(registry=registry, blob__size=28_000_000).images == 1

    snapshot_ingest(
        repository=api, snapshot=snapshot("apps/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    )
    _assert_consistent(registry)
    hot = RegistryBlob.objects.get(registry=registry, blob__size=28_000_000)
    assert (hot.images, hot.repositories) == (3, 2)  # web1, api (child of the index), dup

    # rescan unchanged: nothing moves
    before = _maintained(registry.id), list(ScopeFigures.objects.order_by("id").values())
    snapshot_ingest(
        repository=api, snapshot=snapshot("apps/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    )
    assert (_maintained(registry.id), list(ScopeFigures.objects.order_by("id").values())) == before

    # a tag moves, another appears, one vanishes
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "latest": WEB2, "api": API}))
    _assert_consistent(registry)
    snapshot_ingest(repository=api, snapshot=snapshot("apps/api", {"dup": DUP}))
    _assert_consistent(registry)
    assert not RegistryBlob.objects.filter(registry=registry, blob__size=900).exists()  # arm-base freed

    # everything untagged: the registry holds nothing
    snapshot_ingest(repository=api, snapshot=snapshot("apps/api", {}))
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {}))
    _assert_consistent(registry)
    row = ScopeFigures.objects.get(registry=registry, repository=None)
    assert (row.images, row.repositories, row.stored_bytes, row.logical_bytes) == (0, 0, 0, 0)


def test_rebuild_equals_maintained(registry):
    web = Repository.objects.create(registry=registry, name="apps/web")
    api = Repository.objects.create(registry=registry, name="apps/api")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "2": WEB2}))
    snapshot_ingest(
        repository=api, snapshot=snapshot("apps/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    )
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"2": WEB2, "api": API}))
    maintained = (
        _maintained(registry.id),
        list(
            ScopeFigures.objects.order_by("registry_id", "repository_id").values(
                "repository_id", "images", "logical_bytes", "stored_bytes", "distinct_layers", "repositories"
            )
        ),
    )
    figures_rebuild(registry_id=registry.id)
    rebuilt = (
        _maintained(registry.id),
        list(
            ScopeFigures.objects.order_by("registry_id", "repository_id").values(
                "repository_id", "images", "logical_bytes", "stored_bytes", "distinct_layers", "repositories"
            )
        ),
    )
    assert rebuilt == maintained
    _assert_consistent(registry)


def test_repositories_ingested_together_keep_the_figures_a_recomputation_gives(registry):
    """A batch's repositories in one `snapshots_ingest`: the same manifest gained by two of them, layers
    shared across them, namespaces at several depths, then moves, emptied and unchanged repositories in
    one batch; against the SQL oracle after each batch, and against a rebuild."""
    names = ["org/team/web", "org/team/api", "org/tools", "solo"]
    repos = {n: Repository.objects.create(registry=registry, name=n) for n in names}
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5001")
    elsewhere = Repository.objects.create(registry=other, name="org/team/web")

    def batch(*scans):
        results = snapshots_ingest(
            [
                IngestItem(
                    repos.get(name, elsewhere) if reg is None else reg,
                    snapshot(name, tags, extra=list(extra)),
                )
                for name, tags, extra, reg in scans
            ]
        )
        _assert_consistent(registry)
        _assert_consistent(other)
        return results

    first = batch(
        ("org/team/web", {"1": WEB1, "2": WEB2}, (), None),
        ("org/team/api", {"1": MULTI, "dup": DUP, "sig": SIG}, (API, ARM), None),
        ("org/tools", {"web": WEB1, "api": API}, (), None),  # manifests the others hold, in the same batch
        ("solo", {"1": WEB2}, (), None),
        ("org/team/web", {"1": WEB1}, (), elsewhere),  # another registry in the same batch
    )
    assert [r.tags for r in first] == [2, 3, 2, 1, 1]
    # a manifest new to Layerlens is new once, for the first repository recording it
    assert sum(r.new_manifests for r in first[:4]) == 7  # web1, web2, api, api-arm, multi, dup, sig
    team = NamespaceFigures.objects.get(registry=registry, namespace="org/team")
    assert (team.images, team.repositories) == (5, 2)
    hot = RegistryBlob.objects.get(registry=registry, blob__size=28_000_000)
    # image holdings listing it: web1, web2 | api (the index's child), dup | web1, api | web2
    assert (hot.images, hot.repositories) == (7, 4)

    batch(
        ("org/team/web", {"2": WEB2, "api": API}, (), None),  # a tag moves, one goes
        ("org/team/api", {}, (), None),  # emptied
        ("org/tools", {"web": WEB1, "api": API}, (), None),  # unchanged
        ("solo", {"1": WEB1}, (), None),
    )
    team = NamespaceFigures.objects.get(registry=registry, namespace="org/team")
    assert (team.images, team.repositories) == (2, 1)  # web2, api in org/team/web
    maintained = sorted(NamespaceFigures.objects.filter(registry=registry).values_list(), key=str)
    figures_rebuild(registry_id=registry.id)
    rebuilt = sorted(NamespaceFigures.objects.filter(registry=registry).values_list(), key=str)
    assert [r[1:] for r in rebuilt] == [r[1:] for r in maintained]
    _assert_consistent(registry)


def test_namespace_figures_at_every_depth_follow_ingest_and_rebuild(registry):
    names = ["org/team/web", "org/team/api", "org/tools", "org", "solo"]
    repos = {n: Repository.objects.create(registry=registry, name=n) for n in names}

    def scan(name, tags, extra=()):
        snapshot_ingest(repository=repos[name], snapshot=snapshot(name, tags, extra=list(extra)))
        _assert_namespaces_consistent(registry)

    scan("org/team/web", {"1": WEB1, "2": WEB2})
    scan("org/team/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    scan("org/tools", {"web": WEB1})  # the same manifest in a second repository of "org"
    scan("org", {"x": API})  # a repository named like the namespace: "org" is computed, not read
    scan("solo", {"1": WEB2})
    assert set(NamespaceFigures.objects.filter(registry=registry).values_list("namespace", flat=True)) == {
        "org",
        "org/team",
    }
    team = NamespaceFigures.objects.get(registry=registry, namespace="org/team")
    assert (team.images, team.repositories) == (5, 2)  # web1, web2, api, api-arm, dup (sig: an artifact)
    scan("org/team/web", {"2": WEB2, "api": API})
    scan("org/team/api", {})
    scan("org/team/web", {})
    assert not NamespaceFigures.objects.filter(registry=registry, namespace="org/team").exists()
    scan("org/team/web", {"1": WEB1})

    maintained = sorted(NamespaceFigures.objects.filter(registry=registry).values_list())
    blobs, manifests = _expected_namespaces(registry.id)
    figures_rebuild(registry_id=registry.id)
    rebuilt = sorted(
        (r[1:] for r in NamespaceFigures.objects.filter(registry=registry).values_list()), key=str
    )
    assert rebuilt == sorted((r[1:] for r in maintained), key=str)
    assert _expected_namespaces(registry.id) == (blobs, manifests)
    _assert_namespaces_consistent(registry)


def test_registry_rankings_read_the_maintained_rows(registry):
    """Largest layers, bytes saved and missed savings of a registry, against the records themselves."""
    from analytics.selectors.content import largest_layers, missed_savings
    from analytics.selectors.layers import layer_top

    # the web1 layer's content again under another digest (as a zstd copy would be)
    recompressed = dataclasses.replace(layer("web1", 300), digest=layer("web1-zstd", 0).digest, size=250)
    copy = image("copy", [*BASE, recompressed])
    held = {"apps/web": [WEB1, WEB2, copy], "apps/api": [API, ARM, DUP, SIG]}
    web = Repository.objects.create(registry=registry, name="apps/web")
    api = Repository.objects.create(registry=registry, name="apps/api")
    snapshot_ingest(repository=web, snapshot=snapshot("apps/web", {"1": WEB1, "2": WEB2, "c": copy}))
    snapshot_ingest(
        repository=api, snapshot=snapshot("apps/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    )
    holders, images, sizes, diff_ids = {}, {}, {}, {}
    for records in held.values():
        for record in records:
            for blob in {b.digest: b for b in record.layers}.values():
                holders[blob.digest] = holders.get(blob.digest, 0) + 1
                if record.kind == "image":
                    images[blob.digest] = images.get(blob.digest, 0) + 1
                sizes[blob.digest], diff_ids[blob.digest] = blob.size, blob.diff_id

    scope = Scope(registry_id=registry.id)
    expected = sorted(holders, key=lambda d: (-sizes[d], d))[:4]
    got = [(x.digest, x.size, x.images) for x in largest_layers(scope=scope, limit=4)]
    assert got == [(d, sizes[d], holders[d]) for d in expected]
    assert all(x.created_by.startswith("RUN build ") for x in largest_layers(scope=scope, limit=4))

    saved = {d: sizes[d] * (n - 1) for d, n in images.items()}
    page, after = layer_top(registry_id=registry.id, order="saved_bytes", limit=3)
    assert [(x.digest, x.saved_bytes) for x in page] == sorted(saved.items(), key=lambda kv: -kv[1])[:3]
    assert after is not None

    copies = [d for d in sizes if diff_ids[d] == layer("web1", 300).diff_id]
    assert len(copies) == 2
    (missed,) = missed_savings(scope=scope)
    # keeping the smaller (250-byte) copy saves the 300-byte one
    assert (missed.diff_id, missed.copies, missed.saved_bytes) == (diff_ids[copies[0]], 2, 300)


def _all_figures(registry):
    rows = ScopeFigures.objects.filter(registry=registry).order_by("repository_id").values()
    ns = NamespaceFigures.objects.filter(registry=registry).order_by("namespace").values()
    # the content version is no figure: a rebuild gives the registry row a new one
    return [{k: v for k, v in r.items() if k not in ("id", "content_version")} for r in [*rows, *ns]]


def test_uncompressed_sums_follow_ingest_and_sizes_learned_later(registry):
    names = ["org/team/web", "org/team/api", "org/tools"]
    repos = {n: Repository.objects.create(registry=registry, name=n) for n in names}

    def scan(name, tags, extra=()):
        snapshot_ingest(repository=repos[name], snapshot=snapshot(name, tags, extra=list(extra)))

    def check():
        _assert_consistent(registry)
        scopes = [Scope(registry_id=registry.id, namespace=ns) for ns in ("org", "org/team")]
        for scope in scopes:
            assert dedup_summary(scope=scope) == dedup_summary_computed(scope=scope), scope

    scan("org/team/web", {"1": WEB1, "2": WEB2})
    scan("org/team/api", {"1": MULTI, "dup": DUP, "sig": SIG}, extra=[API, ARM])
    scan("org/tools", {"web": WEB1})
    check()
    assert dedup_summary(scope=Scope(registry_id=registry.id)).uncompressed_known_layers == 0

    # a deep scan measures one blob (UPDATE of one row): every scope holding it moves
    Blob.objects.filter(digest=BASE[0].digest).update(uncompressed_size=70_000_000)
    check()
    s = dedup_summary(scope=Scope(registry_id=registry.id))
    # held by web1, web2 (web), api, dup (api), web1 (tools): five holdings, one stored copy
    assert (s.uncompressed_known_layers, s.uncompressed_stored_bytes) == (1, 70_000_000)
    assert s.uncompressed_logical_bytes == 5 * 70_000_000
    assert s.uncompressed_known_compressed_bytes == 28_000_000

    # engine linking sets many in one statement, including an artifact's layer; a size is corrected,
    # another forgotten
    digests = [BASE[1].digest, "sha256:" + "0" * 64, SIG.layers[0].digest, ARM.layers[0].digest]
    Blob.objects.filter(digest__in=digests).update(uncompressed_size=5000)
    check()
    Blob.objects.filter(digest=BASE[0].digest).update(uncompressed_size=71_000_000)
    Blob.objects.filter(digest=ARM.layers[0].digest).update(uncompressed_size=None)
    check()

    # ingest after the sizes are known: the deltas carry them
    known = dataclasses.replace(layer("known", 800), uncompressed_size=2400)
    scan("org/tools", {"web": WEB1, "new": image("new", [*BASE, known])})
    check()
    scan("org/team/web", {"2": WEB2})
    scan("org/team/api", {"sig": SIG})
    check()

    maintained = _all_figures(registry)
    figures_rebuild(registry_id=registry.id)
    assert _all_figures(registry) == maintained
    check()


def test_build_history_follows_ingest_and_lines_found_later(registry):
    a = Repository.objects.create(registry=registry, name="apps/a")
    b = Repository.objects.create(registry=registry, name="apps/b")
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5001")
    c = Repository.objects.create(registry=other, name="c")
    # a layer first seen in an image without history counts under ''
    late = layer("late-line", 4321)
    bare = dataclasses.replace(image("bare", [*BASE, late]), history=())
    snapshot_ingest(repository=a, snapshot=snapshot("apps/a", {"1": bare}))
    snapshot_ingest(repository=c, snapshot=snapshot("c", {"1": bare, "2": WEB1}))
    _assert_consistent(registry)
    _assert_history_consistent(other)
    # (the base layers have their lines from web1 in the other registry: a line is global)
    lines = {i.created_by: i for i in bytes_by_instruction(scope=Scope(registry_id=registry.id))}
    assert (lines[""].layers, lines[""].stored_bytes) == (1, 4321)
    # an image with history names it: every registry holding it moves it to that line
    snapshot_ingest(repository=b, snapshot=snapshot("apps/b", {"1": image("named", [late]), "w": WEB2}))
    _assert_consistent(registry)
    _assert_history_consistent(other)
    got = {i.created_by: i for i in bytes_by_instruction(scope=Scope(registry_id=other.id))}
    assert got["RUN build named step 0"].layers == 1 and got["RUN build named step 0"].logical_bytes == 4321
    snapshot_ingest(repository=a, snapshot=snapshot("apps/a", {"2": WEB1, "3": DUP}))
    snapshot_ingest(repository=b, snapshot=snapshot("apps/b", {}))
    _assert_consistent(registry)
    maintained = sorted(bytes_by_instruction(scope=Scope(registry_id=registry.id), limit=1000), key=str)
    figures_rebuild(registry_id=registry.id)
    assert (
        sorted(bytes_by_instruction(scope=Scope(registry_id=registry.id), limit=1000), key=str) == maintained
    )
    snapshot_ingest(repository=a, snapshot=snapshot("apps/a", {}))
    assert bytes_by_instruction(scope=Scope(registry_id=registry.id)) == []
