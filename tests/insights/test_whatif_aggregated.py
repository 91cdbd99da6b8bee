"""The what-if's aggregated statement equals the statement it replaced, field by field and to the byte.

The oracle (`tests/support/whatif_oracle.py`) is the earlier statement kept verbatim: a row per lost holding,
judged manifest, judged blob and deleted tag, reduced in Python, with its own lost-holding list for the
largest kept blobs' holders. Both run over hand-made registries holding every case the rule has (layers
shared across repositories and namespaces, a manifest held by two repositories, a multi-platform index
whose child is also tagged elsewhere, a layer listed twice in one manifest, untagged holdings, a second
registry holding the same digests) on many selections: most of the registry, a few tags, one repository,
seeded random subsets; with and without the per-repository breakdown, whole lists and pages; with the
planner's probes and with the hash joins of large selections (`statement_settings`)."""

from __future__ import annotations

import dataclasses
import random

import pytest
from django.db.models import Q

from analytics.models import Registry, RepositoryManifest, Tag
from analytics.selectors import whatif_statement
from analytics.selectors.kept import HOLDERS
from analytics.selectors.whatif import deletion_impact
from harness.records import image, index, ingest, layer
from tests.support.whatif_oracle import oracle_deletion_impact

pytestmark = pytest.mark.django_db

A, B, C, D, E, F, G = (
    layer(n, s)
    for n, s in [("a", 1000), ("b", 2000), ("c", 300), ("d", 40), ("e", 5), ("f", 70_000), ("g", 123)]
)
BASE = [A, B]
WEB = [image(f"web-{i}", [*BASE, layer(f"web-own-{i}", 10 * i + 7)]) for i in range(4)]
API = [image(f"api-{i}", [A, C, layer(f"api-own-{i}", 5 * i + 3)]) for i in range(3)]
MID = image("mid", [A, B, C])
AMD, ARM = image("m-amd", [A, C], arch="amd64"), image("m-arm", [A, D], arch="arm64")
MULTI = index("multi", [AMD, ARM])
DUP = image("dup", [E, E, F])  # one layer listed twice: one reference of each holding
ORPHAN = image("orphan", [G, layer("orphan-own", 77)])  # held, no tag names it


@pytest.fixture
def registries(db):
    return registries_build()


def registries_build() -> tuple[Registry, Registry]:
    hub = Registry.objects.create(name="hub", url="http://127.0.0.1:5000")
    ingest(hub, "team/web", {str(i): m for i, m in enumerate(WEB)} | {"latest": WEB[-1], "mid": MID})
    ingest(hub, "team/api", {str(i): m for i, m in enumerate(API)} | {"mid": MID})
    ingest(hub, "team/multi", {"1": MULTI, "amd": AMD}, extra=[AMD, ARM])
    ingest(hub, "other/amd", {"1": AMD, "dup": DUP})
    ingest(hub, "team/dup", {"1": DUP, "2": image("dup-2", [E, F, B])})
    ingest(hub, "team/orphans", {"1": image("kept", [G, C])}, extra=[ORPHAN])
    ingest(hub, "solo", {"x": image("solo", [layer("solo-own", 9)])})
    mirror = Registry.objects.create(name="mirror", url="http://127.0.0.1:5001")
    # other names: lost holdings are listed by (repository, digest), a key the same pair in two
    # registries would tie on
    ingest(mirror, "copy/web", {"1": WEB[0], "mid": MID})
    ingest(mirror, "copy/multi", {"1": MULTI}, extra=[AMD, ARM])
    return hub, mirror


def tags(**filters) -> list[int]:
    return sorted(Tag.objects.filter(removed_at=None, **filters).values_list("id", flat=True))


def selections(hub: Registry, mirror: Registry) -> dict[str, list[int]]:
    every = tags(repository__registry=hub)
    newest = {
        t.repository_id: t.id
        for t in Tag.objects.filter(repository__registry=hub).order_by("first_seen", "id")
    }
    rng = random.Random(7)
    both = tags()
    out = {
        "every tag of the registry": every,
        "all but one tag per repository": [t for t in every if t not in set(newest.values())],
        "a few tags": tags(repository__name="team/web", name__in=["0", "1"]),
        "one of two tags on a digest": tags(repository__name="team/web", name="3"),
        "the manifest two repositories hold, in one": tags(repository__name="team/api", name="mid"),
        "the manifest two repositories hold, in both": tags(name="mid", repository__registry=hub),
        "one repository": tags(repository__name="team/multi", repository__registry=hub),
        "the index, its child tagged": tags(
            repository__name="team/multi", name="1", repository__registry=hub
        ),
        "a namespace": tags(repository__registry=hub, repository__name__startswith="team/"),
        "the twice-listed layer": tags(repository__name__in=["team/dup", "other/amd"], name__in=["1", "dup"]),
        "a repository with an untagged holding": tags(repository__name="team/orphans"),
        "both registries": both,
        "nothing": [],
        "ids of no current tag": [max(both) + 1000],
    }
    for n in range(12):
        out[f"random subset {n}"] = sorted(rng.sample(both, rng.randint(1, len(both))))
    return out


def _holds(repository: str, digest: str, blob: str) -> bool:
    """Whether `repository` holds the manifest `digest` now and it references the blob `blob`."""
    return RepositoryManifest.objects.filter(
        Q(manifest__layers__digest=blob) | Q(manifest__config__digest=blob),
        repository__name=repository,
        manifest__digest=digest,
        present=True,
    ).exists()


def _named_holders(answer: dict) -> None:
    """A kept blob names as many holders as keep it, up to `kept.HOLDERS`, in each registry its own. With
    more, it names the first few the statement reads, in no order the plan guarantees (reading all of a
    hot blob's holders is what it avoids): each is checked to hold the blob, then only their number is
    compared."""
    for blob in answer.get("kept_largest") or []:
        assert len(blob["holders"]) == min(blob["kept_by"], HOLDERS)  # each registry names its own
        if blob["kept_by"] > HOLDERS:
            assert all(_holds(h["repository"], h["digest"], blob["digest"]) for h in blob["holders"])
            blob["holders"] = len(blob["holders"])


def both_answers(tag_ids: list[int], **kwargs) -> tuple[dict, dict]:
    new = dataclasses.asdict(deletion_impact(tag_ids=tag_ids, **kwargs))
    old = dataclasses.asdict(oracle_deletion_impact(tag_ids=tag_ids, **kwargs))
    new.pop("answered_by"), old.pop("answered_by")
    _named_holders(new), _named_holders(old)
    return new, old


@pytest.mark.parametrize("kept", [False, True], ids=["priced from what is lost", "totals from what stays"])
@pytest.mark.parametrize("hashed", [False, True], ids=["probes", "hash joins"])
def test_every_selection_prices_as_the_row_by_row_statement(registries, hashed, kept, monkeypatch):
    if hashed:
        monkeypatch.setattr(whatif_statement, "WHATIF_HASHED_TAGS", 0)
    assert whatif_statement.statement_settings(1).get("enable_nestloop") == ("off" if hashed else None)
    # every selection without a breakdown priced from what stays, or none
    monkeypatch.setattr(whatif_statement, "PRICE_FROM_KEPT_SHARE", -1 if kept else float("inf"))
    assert whatif_statement.priced_from_kept(0) is kept
    for name, ids in selections(*registries).items():
        for by_repository in (False, True):
            new, old = both_answers(ids, by_repository=by_repository)
            assert new == old, (name, by_repository, {k: (new[k], old[k]) for k in new if new[k] != old[k]})
        new, old = both_answers(ids, details=False)
        assert new == old, name


def test_the_breakdown_is_not_trivial(registries):
    """The selections exercise what the breakdown distinguishes: repositories' own parts, the shared
    line, kept blobs with their holders, manifests that stay."""
    hub, _ = registries
    impact = deletion_impact(
        tag_ids=selections(*registries)["all but one tag per repository"], by_repository=True
    )
    assert impact.shared_manifests and impact.shared_blobs and impact.kept_largest
    assert any(k.holders for k in impact.kept_largest)
    assert any(k.kept_by > HOLDERS for k in impact.kept_largest)  # holders named by `_named_holders`' rule
    whole = deletion_impact(tag_ids=tags(repository__registry=hub), by_repository=True)
    assert whole.shared_freed.blobs and whole.shared_freed.manifests
    assert (
        sum(r.freed_bytes for r in whole.repositories) + whole.shared_freed.freed_bytes == whole.freed_bytes
    )


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_pages_follow_each_other_as_the_row_by_row_statement(registries, limit):
    for name in ("every tag of the registry", "both registries", "random subset 3"):
        pages_compared(both_answers, selections(*registries)[name], limit=limit, name=name)


def pages_compared(answers, ids: list[int], *, limit: int, name: str, **kwargs) -> None:
    """Page through both lists of a deletion, each page of `answers(ids, ...)`'s two answers equal."""
    manifests_after = tags_after = None
    while True:
        page = {"limit": limit, "manifests_after": manifests_after, "tags_after": tags_after}
        new, old = answers(ids, by_repository=True, **kwargs, **page)
        assert new == old, (name, manifests_after, tags_after)
        if not (new["manifests_more"] or new["deleted_tags_more"]):
            break
        if new["manifests_more"]:
            last = new["manifests"][-1]
            manifests_after = (last["repository"], last["digest"])
        if new["deleted_tags_more"]:
            last = new["deleted_tags"][-1]
            tags_after = (last[1], last[2])
