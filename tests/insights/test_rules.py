"""Lineage and what-if rules on hand-made records, whose answers are known by construction."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.errors import InvalidRequest
from analytics.ingest.chains import chains_refresh
from analytics.ingest.snapshot import snapshot_ingest
from analytics.models import Registry, Repository, RepositoryManifest, Tag
from analytics.selectors.lineage import (
    image_base,
    image_derived,
    image_lineage,
    image_stale_base,
    stale_bases,
    stale_bases_computed,
)
from analytics.selectors.whatif import TagRule, deletion_impact, rule_tags, whatif
from harness.records import image, index, layer, snapshot

A, B, C, D, E = (layer(n, s) for n, s in [("a", 1000), ("b", 2000), ("c", 300), ("d", 40), ("e", 5)])
BASE = image("base", [A, B])
TWIN = image("twin", [A, B])  # the same layers under another config: not a proper prefix of BASE
MID = image("mid", [A, B, C])
APP = image("app", [A, B, C, D])
SHUFFLED = image("shuffled", [B, A, C, D, E])  # a superset of APP's layers, not in APP's order


def size(record) -> int:
    """An image's bytes: manifest, config and distinct layers (harness.records.image: config = 1000 + n)."""
    return record.size + record.config.size + sum({x.digest: x.size for x in record.layers}.values())


@pytest.fixture
def registry(db):
    return Registry.objects.create(name="local", url="http://127.0.0.1:5000")


def ingest(registry, name, tags, extra=()):
    repo, _ = Repository.objects.get_or_create(registry=registry, name=name)
    snapshot_ingest(repository=repo, snapshot=snapshot(name, tags, extra=extra))
    chains_refresh(repository_ids=[repo.id])
    return repo


def holding(repo_name, record):
    return RepositoryManifest.objects.select_related("repository").get(
        repository__name=repo_name, manifest__digest=record.digest
    )


def test_base_is_the_longest_ordered_prefix_never_a_set_overlap(registry):
    ingest(registry, "base/os", {"1": BASE})
    ingest(registry, "base/twin", {"1": TWIN})
    ingest(registry, "apps/mid", {"1": MID})
    ingest(registry, "apps/app", {"1": APP})
    ingest(registry, "apps/shuffled", {"1": SHUFFLED})

    app = holding("apps/app", APP)
    assert [b.digest for b in image_lineage(holding=app)][0] == MID.digest
    chain = image_lineage(holding=app)
    assert [b.shared_layers for b in chain] == [3, 2]
    assert chain[1].digest in {BASE.digest, TWIN.digest}
    # Shuffled holds every layer of APP and more, yet no image is an ordered prefix of it.
    assert image_lineage(holding=holding("apps/shuffled", SHUFFLED)) == []
    # Equal layer lists are not a proper prefix of each other.
    assert image_lineage(holding=holding("base/twin", TWIN)) == []

    derived, more = image_derived(holding=holding("base/os", BASE))
    assert [(h.digest, h.extra_layers) for h in derived] == [(MID.digest, 1), (APP.digest, 2)]
    assert more is None


def test_base_in_another_registry_does_not_count(registry, db):
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5001")
    ingest(other, "base/os", {"1": BASE})
    ingest(registry, "apps/mid", {"1": MID})
    mid = holding("apps/mid", MID)
    assert image_base(manifest_id=mid.manifest_id, registry_id=registry.id) is None
    assert image_base(manifest_id=mid.manifest_id, registry_id=other.id).digest == BASE.digest


def test_moved_base_tag_makes_images_built_on_the_old_digest_stale(registry):
    base_v2 = image("base-v2", [A, layer("b2", 2100)])
    app_old = image("app-old", [A, B, D])
    app_new = image("app-new", [*base_v2.layers, E])
    ingest(registry, "base/os", {"1": BASE})
    ingest(registry, "apps/old", {"1": app_old})
    assert stale_bases(registry_id=registry.id) == []

    ingest(registry, "base/os", {"1": base_v2})  # the tag moves; nothing is rebuilt
    ingest(registry, "apps/new", {"1": app_new})
    [row] = stale_bases(registry_id=registry.id)
    assert (row.repository, row.tag, row.old_digest, row.new_digest) == (
        "base/os",
        "1",
        BASE.digest,
        base_v2.digest,
    )
    assert row.images == 1 and row.image_bytes == size(app_old)
    assert [d for _, _, d in row.affected] == [app_old.digest]


def test_deleting_one_of_two_tags_on_a_digest_frees_nothing(registry):
    ingest(registry, "apps/web", {"1.0": MID, "latest": MID})
    tag = Tag.objects.get(name="1.0")
    impact = deletion_impact(tag_ids=[tag.id])
    assert (impact.tags, impact.freed_bytes, impact.manifests_untagged) == (1, 0, 0)


def test_freed_bytes_leave_out_blobs_another_image_of_the_registry_keeps(registry):
    ingest(registry, "apps/web", {"1.0": MID, "latest": MID})
    ingest(registry, "apps/api", {"1": BASE})
    impact = whatif(rule=TagRule(registry_id=registry.id, namespace="apps/web"))
    # MID = A, B, C; BASE keeps A and B.
    assert impact.freed_bytes == MID.size + MID.config.size + C.size
    assert impact.shared_bytes == A.size + B.size and impact.shared_blobs == 2
    assert [(m.digest, m.freed) for m in impact.manifests] == [(MID.digest, True)]


def test_a_manifest_another_repository_holds_is_not_freed_but_its_tags_are_untagged(registry):
    ingest(registry, "apps/web", {"1": MID})
    ingest(registry, "mirror/web", {"1": MID})
    impact = whatif(
        rule=TagRule(registry_id=registry.id, repository_id=Repository.objects.get(name="apps/web").id)
    )
    assert impact.freed_bytes == 0
    assert [(m.repository, m.freed) for m in impact.manifests] == [("apps/web", False)]


def test_same_content_in_another_registry_does_not_keep_it(registry):
    other = Registry.objects.create(name="other", url="http://127.0.0.1:5001")
    ingest(registry, "apps/web", {"1": MID})
    ingest(other, "apps/web", {"1": MID})
    impact = whatif(rule=TagRule(registry_id=registry.id))
    assert impact.freed_bytes == size(MID)


def test_deleting_an_index_tag_frees_the_children_no_other_tag_reaches(registry):
    amd, arm = image("m-amd", [A, C], arch="amd64"), image("m-arm", [A, D], arch="arm64")
    idx = index("multi", [amd, arm])
    ingest(registry, "multi/app", {"1": idx, "amd-only": amd}, extra=[amd, arm])
    impact = whatif(rule=TagRule(registry_id=registry.id, tags=(("multi/app", "1"),)))
    # amd64 stays (its own tag); the index and arm64 go; A stays with amd64.
    assert impact.freed_bytes == idx.size + arm.size + arm.config.size + D.size
    assert {m.digest for m in impact.manifests if m.freed} == {idx.digest, arm.digest}


def test_keep_newest_deletes_all_but_the_newest_tags_per_repository(registry):
    repo = ingest(registry, "apps/web", {"1": BASE, "2": MID, "3": APP})
    ingest(registry, "apps/api", {"1": TWIN})
    now = timezone.now()
    for i, name in enumerate(["1", "2", "3"]):
        Tag.objects.filter(repository=repo, name=name).update(first_seen=now - timedelta(days=10 - i))
    picked = rule_tags(rule=TagRule(registry_id=registry.id, keep_newest=1))
    assert sorted((t.repository.name, t.name) for t in picked) == [("apps/web", "1"), ("apps/web", "2")]
    impact = whatif(rule=TagRule(registry_id=registry.id, keep_newest=1))
    # APP keeps A, B, C; BASE's and MID's manifests and configs go.
    assert impact.freed_bytes == sum(r.size + r.config.size for r in (BASE, MID))


def test_keep_newest_by_current_since_follows_a_moved_tag_first_seen_does_not(registry):
    repo = ingest(registry, "apps/web", {"stable": BASE, "1": MID, "2": APP})
    now = timezone.now()
    for days, name in ((30, "stable"), (20, "1"), (10, "2")):
        Tag.objects.filter(repository=repo, name=name).update(
            first_seen=now - timedelta(days=days), current_since=now - timedelta(days=days)
        )
    ingest(registry, "apps/web", {"stable": SHUFFLED, "1": MID, "2": APP})  # a rescan: stable moved
    stable = Tag.objects.get(repository=repo, name="stable")
    assert stable.first_seen < now - timedelta(days=29) and stable.current_since >= now  # the move's scan

    def kept_one(newest_by):
        picked = rule_tags(rule=TagRule(registry_id=registry.id, keep_newest=1, newest_by=newest_by))
        return sorted(t.name for t in Tag.objects.filter(repository=repo).exclude(id__in=picked))

    assert kept_one("first_seen") == ["2"]  # the name was seen first 30 days ago
    assert kept_one("current_since") == ["stable"]  # it got its current image at the last scan
    impact = whatif(rule=TagRule(registry_id=registry.id, keep_newest=1, newest_by="current_since"))
    # SHUFFLED holds A, B, C, D and E: only MID's and APP's manifests and configs go
    assert impact.freed_bytes == sum(r.size + r.config.size for r in (MID, APP))


def test_newest_by_outside_its_choices_is_refused_by_name(registry):
    with pytest.raises(InvalidRequest, match="newest_by must be one of first_seen, current_since, created"):
        rule_tags(rule=TagRule(registry_id=registry.id, keep_newest=1, newest_by="pushed"))


def test_not_seen_days_and_glob_select_tags(registry):
    repo = ingest(registry, "apps/web", {"v1": BASE, "v2": MID, "edge": APP})
    Tag.objects.filter(repository=repo, name="v1").update(last_seen=timezone.now() - timedelta(days=40))
    old = rule_tags(rule=TagRule(registry_id=registry.id, not_seen_days=30))
    assert [t.name for t in old] == ["v1"]
    globbed = rule_tags(rule=TagRule(registry_id=registry.id, namespace="apps", tag_glob="v[0-9]"))
    assert sorted(t.name for t in globbed) == ["v1", "v2"]


def test_whatif_and_lineage_commands_print_the_known_answers(registry):
    import io
    import json

    from django.core.management import call_command

    ingest(registry, "apps/web", {"1.0": MID})
    ingest(registry, "apps/api", {"1": BASE})
    out = io.StringIO()
    call_command("whatif", "--registry", "local", "--namespace", "apps/web", "--json", stdout=out)
    assert json.loads(out.getvalue())["freed_bytes"] == MID.size + MID.config.size + C.size
    out = io.StringIO()
    call_command("lineage", "--image", holding("apps/web", MID).id, stdout=out)
    assert out.getvalue().split() == [f"apps/api@{BASE.digest}", "(2", "layers)"]


def test_a_moved_base_tag_is_stale_while_a_mirror_still_tags_the_old_digest(registry):
    base_v2 = image("base-v2", [A, layer("b2", 2100)])
    app_old = image("app-old", [A, B, D])
    ingest(registry, "base/os", {"1": BASE})
    ingest(registry, "mirror/os", {"1": BASE, "pinned": BASE})  # copies of the old digest stay tagged
    ingest(registry, "apps/old", {"1": app_old})
    assert stale_bases(registry_id=registry.id) == []

    ingest(registry, "base/os", {"1": base_v2})  # the tag the image was built from moves
    [row] = stale_bases(registry_id=registry.id)
    assert (row.repository, row.tag, row.old_digest, row.new_digest) == (
        "base/os",
        "1",
        BASE.digest,
        base_v2.digest,
    )
    assert row.images == 1 and [d for _, _, d in row.affected] == [app_old.digest]
    assert row.still_tagged == ("mirror/os:1", "mirror/os:pinned")
    assert [s.still_tagged for s in image_stale_base(holding=holding("apps/old", app_old))] == [
        ("mirror/os:1", "mirror/os:pinned")
    ]
    assert [(s.tag, s.still_tagged) for s in stale_bases_computed(registry_id=registry.id)] == [
        ("1", ("mirror/os:1", "mirror/os:pinned"))
    ]
