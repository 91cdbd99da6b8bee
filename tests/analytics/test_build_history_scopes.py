"""Build history and largest layers of every kind of scope equal a from-scratch computation.

The oracle is Python over the rows: the scope's holdings from `Scope.holdings()` (the ORM spelling of
the scope, not the SQL under test), each layer's line from the manifests and history entries (the
oldest manifest listing it with a history entry at its position, never `BlobLine`), holders counted per
holding, each layer once per registry.
"""

import dataclasses
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.ingest.snapshot import snapshot_ingest
from analytics.models import Blob, BlobLine, HistoryEntry, ManifestLayer, Registry, Repository
from analytics.selectors.content import bytes_by_instruction, largest_layers
from analytics.selectors.scope import Scope
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
NO_LINE = layer("no-line", 4321)
BARE = dataclasses.replace(image("bare", [BASE[0], NO_LINE]), history=())  # no history at all
LATE = layer("late-line", 999)
LATE_BARE = dataclasses.replace(image("late-bare", [LATE]), history=())
LATE_NAMED = image("late-named", [LATE])  # names LATE's line after it was first held without one


def _expected(scope):
    """(build history {line: (layers, stored, unique, logical)}, largest layers as tuples, largest first)."""
    holdings = list(scope.holdings().values_list("id", "repository__registry_id", "manifest_id"))
    listed = {}
    rows = ManifestLayer.objects.filter(manifest_id__in={m for _, _, m in holdings})
    for manifest, blob in rows.values_list("manifest_id", "blob_id"):
        listed.setdefault(manifest, set()).add(blob)
    holders = {}
    for holding, registry, manifest in holdings:
        for blob in listed.get(manifest, ()):
            holders.setdefault((registry, blob), set()).add(holding)
    blobs = {b.id: b for b in Blob.objects.filter(id__in={b for _, b in holders})}
    history = {
        (c, p): line
        for c, p, line in HistoryEntry.objects.filter(config__isnull=False).values_list(
            "config_id", "layer_position", "created_by"
        )
    }
    lines = {}
    rows = ManifestLayer.objects.filter(blob_id__in=blobs)
    for blob, _manifest, position, config in sorted(
        rows.values_list("blob_id", "manifest_id", "position", "manifest__config_id")
    ):
        if (config, position) in history:
            lines.setdefault(blob, history[(config, position)])
    by_line = {}
    for (_registry, blob), hs in holders.items():
        size = blobs[blob].size
        row = by_line.setdefault(lines.get(blob, ""), [0, 0, 0, 0])
        row[0] += 1
        row[1] += size
        row[2] += size if len(hs) == 1 else 0
        row[3] += size * len(hs)
    largest = sorted(
        (
            (blobs[b].digest, blobs[b].size, blobs[b].uncompressed_size, reg, len(hs), lines.get(b, ""))
            for (reg, b), hs in holders.items()
        ),
        key=lambda x: (-x[1], x[0], x[3]),
    )
    return {line: tuple(v) for line, v in by_line.items()}, largest


def _assert_scope(scope):
    history, largest = _expected(scope)
    got = bytes_by_instruction(scope=scope, limit=10_000)
    assert {i.created_by: (i.layers, i.stored_bytes, i.unique_bytes, i.logical_bytes) for i in got} == history
    for order, column in (("stored", 1), ("unique", 2), ("logical", 3)):
        ranked = [line for line, _ in sorted(history.items(), key=lambda kv: (-kv[1][column], kv[0]))]
        page = bytes_by_instruction(scope=scope, order=order, limit=3, offset=1)
        assert [i.created_by for i in page] == ranked[1:4], (scope, order)
    got_largest = [dataclasses.astuple(x) for x in largest_layers(scope=scope, limit=1000)]
    assert got_largest == largest, scope
    assert [dataclasses.astuple(x) for x in largest_layers(scope=scope, limit=3, offset=2)] == largest[2:5]
    return history, largest


@pytest.fixture
def registries(db):
    one = Registry.objects.create(name="one", url="http://127.0.0.1:5000")
    two = Registry.objects.create(name="two", url="http://127.0.0.1:5001")
    repos = {}

    def scan(registry, name, tags, extra=()):
        key = (registry.id, name)
        if key not in repos:
            repos[key] = Repository.objects.create(registry=registry, name=name)
        snapshot_ingest(repository=repos[key], snapshot=snapshot(name, tags, extra=list(extra)))

    scan(two, "org/team/web", {"v1": BARE, "v3": WEB1, "late": LATE_BARE})
    scan(one, "org/team/web", {"v1": WEB1, "v2": WEB2})
    # v1 moves on: web1 stays held untagged (include_untagged)
    scan(one, "org/team/web", {"v1": WEB2, "v2": WEB2, "v1.1": DUP})
    scan(one, "org/team/api", {"v1": MULTI, "sig": SIG, "v2": API}, extra=[API, ARM])
    scan(one, "org/tools", {"v1": WEB1, "bare": BARE})
    scan(one, "org", {"latest": BARE, "v1": WEB2})  # a repository named like a namespace
    scan(one, "solo", {"x": image("solo", [layer("solo", 77)]), "named": LATE_NAMED})
    return one, two, {name: repo for (reg, name), repo in repos.items() if reg == one.id}


def test_every_scope_matches_the_holdings(registries):
    one, two, repos = registries
    web = repos["org/team/web"]
    an_hour_ago = timezone.now() - timedelta(hours=1)
    scopes = [
        Scope(registry_id=one.id),
        Scope(registry_id=two.id),
        Scope(),
        Scope(include_untagged=True),
        Scope(registry_id=one.id, include_untagged=True),
        Scope(registry_id=one.id, namespace="org/team"),
        Scope(namespace="org/team"),
        Scope(registry_id=one.id, namespace="org"),
        Scope(registry_id=one.id, namespace="org/team", include_untagged=True),
        Scope(registry_id=one.id, namespace="nothing-here"),
        Scope(repository_id=web.id),
        Scope(repository_id=web.id, include_untagged=True),
        Scope(registry_id=one.id, tag_glob="v1*"),
        Scope(tag_glob="v1*", include_untagged=True),
        Scope(registry_id=one.id, namespace="org/team", tag_glob="v1*"),
        Scope(registry_id=one.id, platform="linux/arm64"),
        Scope(registry_id=one.id, labels=(("maintainer", "nobody"),)),
        Scope(registry_id=one.id, last_seen_after=an_hour_ago),
        Scope(registry_id=one.id, last_seen_before=an_hour_ago),
    ]
    answers = {scope: _assert_scope(scope) for scope in scopes}

    # the scopes differ where they should, so the comparison above is not vacuous
    whole, _ = answers[Scope(registry_id=one.id)]
    assert answers[Scope(registry_id=one.id, namespace="org/team")][0] != whole
    assert answers[Scope(registry_id=one.id, include_untagged=True)][0] != whole
    assert answers[Scope(registry_id=one.id, tag_glob="v1*")][0] != whole
    assert answers[Scope(registry_id=one.id, labels=(("maintainer", "nobody"),))] == ({}, [])
    # a layer without a history line counts under ''; a line found later is every registry's line
    assert not BlobLine.objects.filter(blob__digest=NO_LINE.digest).exists()
    assert whole[""] == (1, NO_LINE.size, 0, 2 * NO_LINE.size)  # bare in org/tools and org
    assert answers[Scope(registry_id=two.id)][0]["RUN build late-named step 0"] == (1, 999, 999, 999)
    # web1 is held untagged in org/team/web only, in registry one
    untagged = answers[Scope(repository_id=web.id, include_untagged=True)][0]
    assert untagged["RUN build web1 step 2"] == (1, 300, 300, 300)
    assert "RUN build web1 step 2" not in answers[Scope(repository_id=web.id)][0]
    # a layer listed twice by one image counts that image once: web2, dup and api in their repositories,
    # web1 and bare in org/tools, bare and web2 in org
    assert whole["RUN build web1 step 0"][3] == 28_000_000 * 7


def test_namespace_scopes_read_the_namespace_rows(registries):
    one, _two, _repos = registries
    for scope, maintained in (
        (Scope(registry_id=one.id, namespace="org/team"), True),
        (Scope(namespace="org/team/"), True),
        # the repository named `org` is in the scope, not in the namespace rows
        (Scope(registry_id=one.id, namespace="org"), False),
        (Scope(registry_id=one.id, namespace="org/team", tag_glob="*"), False),
    ):
        for question in (bytes_by_instruction, largest_layers):
            with CaptureQueriesContext(connection) as queries:
                question(scope=scope)
            read = any("analytics_namespaceblob" in q["sql"] for q in queries.captured_queries)
            assert read == maintained, (scope, question)


def test_rebuild_finds_the_lines_of_layers_held_only_untagged(registries):
    """Data from before `BlobLine` (or lost lines): the rebuild looks up every held layer's line, so
    build history with untagged holdings names them instead of counting them under ''."""
    from analytics.ingest.rebuild import figures_rebuild

    one, _two, _repos = registries
    gone = image("gone", [layer("gone", 123)])
    repo = Repository.objects.create(registry=one, name="moved/away")
    snapshot_ingest(repository=repo, snapshot=snapshot("moved/away", {"t": gone}))
    snapshot_ingest(repository=repo, snapshot=snapshot("moved/away", {"t": WEB2}))  # gone: untagged
    scope = Scope(repository_id=repo.id, include_untagged=True)
    BlobLine.objects.all().delete()
    figures_rebuild(registry_id=one.id)
    line = BlobLine.objects.get(blob__digest=gone.layers[0].digest).created_by
    assert line == "RUN build gone step 0"
    assert _assert_scope(scope)[0][line] == (1, 123, 123, 123)


def test_scope_sql_and_orm_spellings_hold_the_same_manifests(registries):
    """`Scope.where` (the SQL every computed figure uses) selects exactly `Scope.holdings()` (the ORM),
    including index children named through a tag on their index."""
    one, two, repos = registries
    scopes = [
        Scope(registry_id=one.id, tag_glob="v1*"),
        Scope(tag_glob="v*", include_untagged=True),
        Scope(registry_id=one.id, namespace="org/team", tag_glob="v1"),
        Scope(registry_id=one.id, tag_glob="nothing*"),
        Scope(registry_id=two.id, tag_glob="late"),
    ]
    api_children = set(
        Repository.objects.get(id=repos["org/team/api"].id)
        .held_manifests.filter(manifest__digest__in=[API.digest, ARM.digest])
        .values_list("id", flat=True)
    )
    for scope in scopes:
        where, params = scope.where()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT rm.id FROM analytics_repositorymanifest rm "
                f"JOIN analytics_repository r ON r.id = rm.repository_id WHERE {where}",
                params,
            )
            sql = {row[0] for row in cursor.fetchall()}
        assert sql == set(scope.holdings().values_list("id", flat=True)), scope
    # v1 names the index (api-multi), so both its children are in the v1* scope
    v1 = Scope(registry_id=one.id, tag_glob="v1*").holdings().values_list("id", flat=True)
    assert api_children and api_children <= set(v1)
