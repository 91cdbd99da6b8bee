"""The bounded partners computation equals the full one and a from-scratch Python one, over random worlds.

Worlds are ingested as scans would write them (`snapshot_ingest`, so the maintained counts the bounded
method orders parts by are the real ones): base stacks shared as layer prefixes, stacks built on stacks,
a small layer at random positions (sharing off the chain), layers listed twice, zero-byte layers, equal
sizes (ties), configs shared between images and a config that is another image's layer, the same
manifest in several repositories and registries, indexes, artifacts, and moved tags leaving untagged
holdings. The oracle is Python over the rows: the scope's holdings from `Scope.holdings()` (the ORM
spelling), each holding's blobs from `ManifestLayer` and `Manifest.config`.

The bounded method is run with its module constants as shipped and forced down each path: every part
cold (the full computation), the full computation chosen over the walk, no part cold (the walk to its
end), a few parts cold then the walk, and a walk cut short (the full computation after it).
"""

import dataclasses
import random
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from analytics.ingest.snapshot import snapshot_ingest
from analytics.models import Manifest, ManifestLayer, Registry, Repository, RepositoryManifest
from analytics.selectors import partners
from analytics.selectors.content import image_partners
from analytics.selectors.scope import Scope
from harness.records import digest, image, index, layer, snapshot
from workers.registry.records import KIND_ARTIFACT, BlobRecord

LIMITS = (1, 3, 10, 1000)
FULL = "GROUP BY o.holding_id"

# (COLD_HOLDERS, WALK_FIRST_IDS, WALK_IDS, WALK_COST): as shipped, every part cold (so the full
# computation), the full computation chosen over the walk, all walked, the walk cut short, a few parts
# cold then the walk
PATHS = {
    "shipped": (partners.COLD_HOLDERS, partners.WALK_FIRST_IDS, partners.WALK_IDS, partners.WALK_COST),
    "few": (10**9, 1, 10**9, 0),
    "full": (0, 1, 10**9, 10**9),
    "walk": (0, 1, 10**9, 0),
    "walk-then-whole": (0, 1, 3, 0),
    "some-cold": (3, 2, 10**9, 0),
}


def _force(monkeypatch, cold, first, walk, cost):
    monkeypatch.setattr(partners, "COLD_HOLDERS", cold)
    monkeypatch.setattr(partners, "WALK_FIRST_IDS", first)
    monkeypatch.setattr(partners, "WALK_IDS", walk)
    monkeypatch.setattr(partners, "WALK_COST", cost)


def _scoring(queries) -> list[str]:
    """The scoring statements run, in order: step 1 (`ANY`), the walk's ranges (`rm.id <=`), the full
    computation (`GROUP BY o.holding_id`)."""
    return [
        q["sql"] for q in queries.captured_queries if "CROSS JOIN LATERAL" in q["sql"] or FULL in q["sql"]
    ]


def _oracle(*, holding: RepositoryManifest, scope: Scope, limit: int) -> list[tuple[int, int, int]]:
    this = holding.manifest
    parts = {b.id: b.size for b in this.layers.all()}
    if this.config_id is not None:
        parts[this.config_id] = this.config.size
    rows = []
    for h in scope.holdings().select_related("manifest"):
        if h.id == holding.id:
            continue
        held = set()
        if h.manifest.kind == "image":
            held = set(
                ManifestLayer.objects.filter(manifest_id=h.manifest_id).values_list("blob_id", flat=True)
            )
            held.add(h.manifest.config_id)
        shared = held & parts.keys()
        same = h.manifest_id == this.id
        if shared or same:
            rows.append((h.id, len(shared), sum(parts[b] for b in shared) + (this.size if same else 0)))
    rows.sort(key=lambda r: (-r[2], r[0]))
    return rows[:limit]


def _world(seed: int):
    """Two registries of random images over shared stacks; returns (registries, repositories)."""
    rng = random.Random(seed)
    sizes = [0, 32, 32, 500, 500, 7_000, 1_000_000]

    def size() -> int:
        return rng.choice(sizes) if rng.random() < 0.5 else rng.randint(1, 3_000_000)

    empty = layer(f"{seed}-empty", 32)  # off the chain: at any position
    root = [layer(f"{seed}-root-{i}", size()) for i in range(rng.randint(1, 3))]
    stacks = [root, root + [layer(f"{seed}-mid-{i}", size()) for i in range(rng.randint(1, 3))]]
    stacks.append(stacks[1] + [layer(f"{seed}-top-{i}", size()) for i in range(2)])
    stacks.append([layer(f"{seed}-other-{i}", size()) for i in range(2)])
    made: list = []

    def make(repo: str, n: int):
        prev_own: list = []
        out = []
        for i in range(n):
            base = list(rng.choice(stacks)) if rng.random() < 0.8 else []
            own = prev_own[: rng.randint(0, len(prev_own))] if rng.random() < 0.6 else []
            own = own + [layer(f"{seed}-{repo}-{i}-{j}", size()) for j in range(rng.randint(0, 3))]
            layers = base + own
            if rng.random() < 0.3:
                layers.insert(rng.randint(0, len(layers)), empty)
            if layers and rng.random() < 0.15:
                layers.append(rng.choice(layers))  # a layer listed twice
            if not layers:
                layers = [layer(f"{seed}-{repo}-{i}-only", size())]
            if made and rng.random() < 0.1:  # another image's config as a layer (a blob in two roles)
                cfg = rng.choice(made).config
                layers.append(BlobRecord(digest=cfg.digest, media_type=layers[0].media_type, size=cfg.size))
            label = rng.choice(["app", "svc", f"{repo}-{i}"])  # a shared label shares the config
            img = image(
                label,
                layers,
                arch=rng.choice(["amd64", "amd64", "arm64"]),
                config_size=1000,
                manifest_size=rng.choice([400, 500]),
            )
            made.append(img)
            out.append(img)
            prev_own = own
        return out

    registries = [
        Registry.objects.create(name=f"one-{seed}", url=f"http://127.0.0.1:{5000 + seed}"),
        Registry.objects.create(name=f"two-{seed}", url=f"http://127.0.0.1:{6000 + seed}"),
    ]
    repos = {}
    names = ["org/team/web", "org/team/api", "org/tools", "org", "solo"]
    for registry in registries:
        for name in names if registry is registries[0] else names[:2]:
            repo = Repository.objects.create(registry=registry, name=name)
            repos[(registry.id, name)] = repo
            images = make(name, rng.randint(1, 6))
            if made and rng.random() < 0.4:
                images.append(rng.choice(made))  # the same manifest in another repository
            tags = {f"v{i}": img for i, img in enumerate(images)}
            extra = []
            if len(images) > 1 and rng.random() < 0.5:
                tags["multi"] = index(f"{seed}-{name}-multi", images[:2])
                extra = images[:2]
            if rng.random() < 0.3:
                sig = dataclasses.replace(image(f"{seed}-{name}-sig", [empty]), kind=KIND_ARTIFACT)
                tags["sig"] = sig
            snapshot_ingest(repository=repo, snapshot=snapshot(name, tags, extra=extra))
            if rng.random() < 0.5:  # tags move on: the first images stay held untagged
                moved = {**tags, "v0": images[-1], "latest": images[-1]}
                if rng.random() < 0.5:
                    moved.pop("v1", None)
                snapshot_ingest(repository=repo, snapshot=snapshot(name, moved, extra=extra))
    return registries, repos


def _scopes(registries, repos):
    one, two = registries
    return [
        Scope(registry_id=one.id),
        Scope(registry_id=two.id),
        Scope(),
        Scope(registry_id=one.id, include_untagged=True),
        Scope(registry_id=one.id, namespace="org/team"),
        Scope(namespace="org"),
        Scope(repository_id=repos[(one.id, "org/team/web")].id),
        Scope(repository_id=repos[(one.id, "org/team/web")].id, include_untagged=True),
        Scope(registry_id=one.id, tag_glob="v[0-1]"),
        Scope(tag_glob="multi", include_untagged=True),
        Scope(registry_id=one.id, platform="linux/arm64"),
        Scope(registry_id=one.id, labels=(("maintainer", "nobody"),)),
        Scope(registry_id=one.id, last_seen_after=timezone.now() - timedelta(hours=1)),
        Scope(
            registry_id=one.id, last_seen_before=timezone.now() - timedelta(hours=1), include_untagged=True
        ),
    ]


@pytest.mark.parametrize("seed", range(6))
def test_bounded_partners_equal_the_full_computation(db, monkeypatch, seed):
    registries, repos = _world(seed)
    rng = random.Random(seed)
    subjects = list(
        RepositoryManifest.objects.filter(manifest__kind="image").select_related("manifest__config")
    )
    subjects = rng.sample(subjects, min(6, len(subjects)))
    compared = ties = 0
    for holding in subjects:
        for scope in _scopes(registries, repos):
            for limit in LIMITS:
                expected = _oracle(holding=holding, scope=scope, limit=limit)
                args = {
                    "holding_id": holding.id,
                    "manifest_id": holding.manifest_id,
                    "scope": scope,
                    "limit": limit,
                }
                assert partners.partner_rows_full(**args) == expected, (holding.id, scope, limit)
                for path, constants in PATHS.items():
                    _force(monkeypatch, *constants)
                    assert partners.partner_rows(**args) == expected, (path, holding.id, scope, limit)
                compared += bool(expected)
                ties += len({s for *_, s in expected}) < len(expected)
    assert compared > 50 and ties > 5  # the worlds are not vacuous: partners, and ties among them


def test_each_path_is_taken(db, monkeypatch):
    """The paths the comparison above forces are the ones it claims: the walk runs, and is cut short."""
    registries, _repos = _world(3)
    holding = (
        RepositoryManifest.objects.filter(manifest__kind="image", repository__registry=registries[0])
        .order_by("-manifest__layer_count", "id")
        .first()
    )
    args = {"holding_id": holding.id, "manifest_id": holding.manifest_id, "scope": Scope(), "limit": 1000}
    for path, walks, full in (("few", False, True), ("full", False, True), ("walk", True, False)):
        _force(monkeypatch, *PATHS[path])
        with CaptureQueriesContext(connection) as queries:
            partners.partner_rows(**args)
        sql = _scoring(queries)
        assert (sum("rm.id <= " in s for s in sql) > 0, FULL in sql[-1]) == (walks, full), path
    _force(monkeypatch, *PATHS["walk-then-whole"])
    with CaptureQueriesContext(connection) as queries:
        partners.partner_rows(**args)
    sql = _scoring(queries)
    assert sum("rm.id <= " in s for s in sql) >= 1  # 3 ids walked
    assert FULL in sql[-1]  # then the full computation


def test_ties_at_a_base_go_to_the_lowest_holding_ids(db, monkeypatch):
    """Many images on one base tie at its bytes: the first page names the lowest holding ids, found by
    a short walk when the base's layers are too hot to read whole."""
    _force(monkeypatch, 5, 1, 10**9, 0)
    registry = Registry.objects.create(name="r", url="http://127.0.0.1:5999")
    base = [layer("tie-base-0", 5_000_000), layer("tie-base-1", 20)]
    holdings = []
    for i in range(30):
        repo = Repository.objects.create(registry=registry, name=f"app{i}")
        snapshot_ingest(
            repository=repo,
            snapshot=snapshot(f"app{i}", {"v": image(f"app{i}", [*base, layer(f"own{i}", 9)])}),
        )
        holdings.append(RepositoryManifest.objects.get(repository=repo))
    subject = holdings[17]
    scope = Scope(registry_id=registry.id)
    with CaptureQueriesContext(connection) as queries:
        got = image_partners(holding_id=subject.id, manifest_id=subject.manifest_id, scope=scope, limit=5)
    sql = _scoring(queries)
    assert "rm.id <= " in sql[-1]  # the walk settled it, the base's holdings never read whole
    assert [p.holding_id for p in got] == [h.id for h in holdings if h.id != subject.id][:5]
    assert {p.shared_bytes for p in got} == {5_000_020} and {p.shared_blobs for p in got} == {2}
    full = partners.partner_rows_full(
        holding_id=subject.id, manifest_id=subject.manifest_id, scope=scope, limit=5
    )
    assert [(p.holding_id, p.shared_blobs, p.shared_bytes) for p in got] == full
    assert Manifest.objects.filter(layers__digest=digest("layer:tie-base-0")).count() == 30


def test_a_candidate_tied_at_the_bound_waits_for_lower_ids(db, monkeypatch):
    """A holding found through a cold part can score exactly the hot parts' bytes (the cold part it
    shares is empty): it is not the answer until no unseen holding with a lower id can tie it."""
    _force(monkeypatch, 5, 1, 10**9, 0)
    registry = Registry.objects.create(name="r", url="http://127.0.0.1:5998")
    base, empty = [layer("bound-base", 3_000)], layer("bound-empty", 0)
    for i, layers in enumerate([base] * 8 + [[*base, empty], [*base, empty, layer("subject", 5)]]):
        repo = Repository.objects.create(registry=registry, name=f"b{i}")
        snapshot_ingest(repository=repo, snapshot=snapshot(f"b{i}", {"v": image(f"b{i}", layers)}))
    subject = RepositoryManifest.objects.get(repository__name="b9")
    scope = Scope(registry_id=registry.id)
    args = {"holding_id": subject.id, "manifest_id": subject.manifest_id, "scope": scope}
    lowest = RepositoryManifest.objects.get(repository__name="b0").id
    for limit in (1, 2, 9, 10):
        got = partners.partner_rows(**args, limit=limit)
        assert (
            got
            == partners.partner_rows_full(**args, limit=limit)
            == _oracle(holding=subject, scope=scope, limit=limit)
        )
        assert got[0] == (lowest, 1, 3_000)
