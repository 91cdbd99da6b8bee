"""Warm and cold on hand-made records whose answers are known by construction: the window's edges, an
index's pull, an artifact's subject, pulls in another repository, the coverage flag, the cold list's
pages, and not_pulled_days as a what-if rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from analytics.errors import InvalidRequest
from analytics.events.pulls import pulls_record
from analytics.models import Registry, RegistryEvent, Repository, RepositoryManifest, Tag
from analytics.selectors.cold import cold_answer, cold_images, cold_tag_ids, cold_totals
from analytics.selectors.pulls import pull_coverage
from analytics.selectors.whatif import TagRule, deletion_impact, rule_tags, whole_registry
from harness.records import image, index, ingest, layer
from workers.registry.records import KIND_ARTIFACT

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
DAYS = 30
CUTOFF = NOW - timedelta(days=DAYS)

A, B, C, D = (layer(n, s) for n, s in [("a", 1000), ("b", 2000), ("c", 300), ("d", 40)])
OLD = image("old", [A, B])
EDGE = image("edge", [A, C])
FRESH = image("fresh", [A, D])
AMD = image("multi-amd", [A, B, C], arch="amd64")
ARM = image("multi-arm", [A, B, D], arch="arm64")
MULTI = index("multi", [AMD, ARM])
SIG = image("sig", [layer("sig-payload", 77)])
SIGNATURE = replace(SIG, kind=KIND_ARTIFACT, subject=FRESH.digest)

_keys = count()


@pytest.fixture
def registry(db):
    return Registry.objects.create(name="local", url="http://127.0.0.1:5000")


def pull(registry: Registry, repository: str, digest: str, at: datetime, **fields: object) -> None:
    """A pull as the receiver stores it, then counted."""
    event = RegistryEvent.objects.create(
        registry=registry,
        source=RegistryEvent.Source.DISTRIBUTION,
        key=f"pull-{next(_keys)}",
        action=RegistryEvent.Action.PULL,
        repository=repository,
        digest=digest,
        user_agent="skopeo/1.9.3",
        occurred_at=at,
        **fields,
    )
    pulls_record(registry_id=registry.id, events=[event])


def place(registry: Registry, **kw: object) -> TagRule:
    return TagRule(registry_id=registry.id, **kw)  # type: ignore[arg-type]


def cold_digests(registry: Registry, days: int = DAYS, **kw: object) -> set[tuple[str, str]]:
    rows, _ = cold_images(place=place(registry, **kw), days=days, limit=1000, now=NOW)
    return {(r.repository, r.digest) for r in rows}


def cold_tags(registry: Registry, days: int = DAYS, **kw: object) -> set[str]:
    ids = cold_tag_ids(place=place(registry, **kw), days=days, now=NOW)
    return {
        f"{t.repository.name}:{t.name}" for t in Tag.objects.filter(id__in=ids).select_related("repository")
    }


def test_the_window_includes_its_first_instant_and_nothing_before(registry):
    ingest(registry, "apps/web", {"old": OLD, "edge": EDGE, "fresh": FRESH, "never": image("never", [C])})
    pull(registry, "apps/web", OLD.digest, CUTOFF - timedelta(microseconds=1))
    pull(registry, "apps/web", EDGE.digest, CUTOFF)
    pull(registry, "apps/web", FRESH.digest, NOW - timedelta(hours=1))
    never = image("never", [C]).digest

    assert cold_digests(registry) == {("apps/web", OLD.digest), ("apps/web", never)}
    assert cold_tags(registry) == {"apps/web:old", "apps/web:never"}
    # a longer window reaches the old pull; a shorter one leaves the edge behind
    assert cold_digests(registry, days=31) == {("apps/web", never)}
    assert cold_digests(registry, days=29) == {
        ("apps/web", OLD.digest),
        ("apps/web", EDGE.digest),
        ("apps/web", never),
    }


def test_a_pull_counts_in_its_own_repository_only(registry):
    ingest(registry, "apps/web", {"1": OLD})
    ingest(registry, "apps/copy", {"1": OLD})
    pull(registry, "apps/copy", OLD.digest, NOW)
    assert cold_digests(registry) == {("apps/web", OLD.digest)}
    assert cold_tags(registry) == {"apps/web:1"}


def test_an_index_pull_warms_every_child_and_a_child_pull_keeps_its_tag(registry):
    ingest(registry, "apps/multi", {"1": MULTI}, extra=[AMD, ARM])
    ingest(registry, "apps/other", {"1": MULTI}, extra=[AMD, ARM])
    pull(registry, "apps/multi", MULTI.digest, NOW)  # the index: both platforms warm
    pull(registry, "apps/other", AMD.digest, NOW)  # one child by digest: its sibling stays cold

    assert cold_digests(registry) == {("apps/other", ARM.digest)}
    # apps/other:1 reaches a warm child: deleting it would untag that, so it is not a cold tag
    assert cold_tags(registry) == set()


def test_an_artifact_is_warm_with_its_subject(registry):
    ingest(registry, "apps/web", {"fresh": FRESH, "sha256-fresh.sig": SIGNATURE})
    assert cold_tags(registry) == {"apps/web:fresh", "apps/web:sha256-fresh.sig"}
    pull(registry, "apps/web", FRESH.digest, NOW)
    assert cold_tags(registry) == set()


def test_coverage_says_since_when_pulls_are_counted(registry):
    registry_place = {"registry_id": registry.id, "namespace": None, "repository_id": None}
    nothing = pull_coverage(**registry_place, days=DAYS, now=NOW)
    assert not nothing.covered and nothing.registries[0].counted_since is None

    ingest(registry, "apps/web", {"1": OLD})
    # a push event is evidence too: the registry was notifying then
    push = RegistryEvent.objects.create(
        registry=registry,
        source=RegistryEvent.Source.DISTRIBUTION,
        key="push-1",
        action=RegistryEvent.Action.PUSH,
        repository="apps/web",
        digest=OLD.digest,
        occurred_at=CUTOFF + timedelta(seconds=1),
    )
    pulls_record(registry_id=registry.id, events=[push])
    short = pull_coverage(**registry_place, days=DAYS, now=NOW)
    assert short.registries[0].counted_since == CUTOFF + timedelta(seconds=1)
    assert not short.covered
    pull(registry, "apps/web", OLD.digest, CUTOFF)
    assert pull_coverage(**registry_place, days=DAYS, now=NOW).covered
    assert not pull_coverage(**registry_place, days=DAYS + 1, now=NOW).covered
    # a later event never moves the start forward
    pull(registry, "apps/web", OLD.digest, NOW)
    assert Registry.objects.get(id=registry.id).pulls_counted_since == CUTOFF


def test_the_pages_walk_every_cold_image_once_in_order(registry):
    for n, name in enumerate(["b/two", "a/one", "c/three"]):
        ingest(
            registry,
            name,
            {f"t{i}": image(f"{name}-{i}", [A, layer(f"{name}-{i}", 10 + i)]) for i in range(3)},
        )
        if n == 0:
            pull(registry, name, image(f"{name}-1", [A, layer(f"{name}-1", 11)]).digest, NOW)
    rule = place(registry)
    walked, after, pages = [], None, 0
    while True:
        rows, after = cold_images(place=rule, days=DAYS, after=after, limit=2, now=NOW)
        walked += rows
        pages += 1
        if after is None:
            break
    assert pages == 4
    assert [r.repository for r in walked] == ["a/one"] * 3 + ["b/two"] * 2 + ["c/three"] * 3
    assert len({r.holding_id for r in walked}) == 8
    # a walk bounded to 2 holdings a page: short pages, even empty ones, with a next; the same rows
    bounded, after, pages = [], None, 0
    while True:
        rows, after = cold_images(place=rule, days=DAYS, after=after, limit=5, now=NOW, walk=2)
        bounded += rows
        pages += 1
        if after is None:
            break
    assert [r.holding_id for r in bounded] == [r.holding_id for r in walked]
    assert pages == 5  # 9 holdings, 2 a page
    totals = cold_totals(place=rule, days=DAYS, now=NOW)
    assert totals.images == 8
    assert totals.logical_bytes == sum(r.size_bytes for r in walked)


def test_cold_bytes_are_the_whatif_of_the_cold_tags_and_the_rule_combines(registry):
    ingest(registry, "apps/web", {"old": OLD, "fresh": FRESH, "v1.0": EDGE})
    pull(registry, "apps/web", FRESH.digest, NOW)
    rule = place(registry, not_pulled_days=DAYS)
    assert not whole_registry(rule)
    tags = rule_tags(rule=rule, now=NOW)
    assert sorted(t.name for t in tags) == ["old", "v1.0"]
    combined = rule_tags(rule=place(registry, not_pulled_days=DAYS, tag_glob="v1.*"), now=NOW)
    assert [t.name for t in combined] == ["v1.0"]

    totals = cold_totals(place=place(registry), days=DAYS, now=NOW)
    impact = deletion_impact(tag_ids=[t.id for t in tags], details=False)
    assert (totals.tags, totals.freed_bytes) == (2, impact.freed_bytes)
    # A is FRESH's too: it stays; B (OLD's), C (EDGE's), their configs and manifests go
    own = [OLD.size, OLD.config.size, B.size, EDGE.size, EDGE.config.size, C.size]
    assert totals.freed_bytes == sum(own)
    assert totals.kept_bytes == A.size


def test_bad_windows_are_refused(registry):
    for days in (0, -1, 36_501):
        with pytest.raises(InvalidRequest):
            cold_answer(place=place(registry), days=days, now=NOW)
        with pytest.raises(InvalidRequest):
            list(rule_tags(rule=place(registry, not_pulled_days=days), now=NOW))


def test_holdings_untagged_are_never_cold(registry):
    ingest(registry, "apps/web", {"1": OLD})
    ingest(registry, "apps/web", {"1": FRESH})  # OLD untagged: no longer held
    assert not RepositoryManifest.objects.get(manifest__digest=OLD.digest).present
    assert cold_digests(registry) == {("apps/web", FRESH.digest)}
    assert Repository.objects.count() == 1
