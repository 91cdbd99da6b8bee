"""The what-if judged over a registry's columns equals the row-by-row statement, field by field and to the
byte, on the registries and selections the aggregated statement is tested on (every case the rule has:
shared layers, a manifest two repositories hold, an index whose child is tagged elsewhere, a layer listed
twice, untagged holdings, a second registry with the same digests); with and without the breakdown, whole
lists and pages. The columns are kept per content version: a scan that changes the registry is read anew,
and a selection the columns cannot answer (another registry's tags) is the statement's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from analytics.models import Registry, Tag
from analytics.selectors import whatif_columns
from analytics.selectors.columns import columns_keep, registry_columns
from analytics.selectors.whatif import deletion_impact
from harness.records import image, ingest, layer
from tests.insights.test_whatif_aggregated import (
    A,
    _named_holders,
    pages_compared,
    registries_build,
    selections,
    tags,
)
from tests.support.whatif_oracle import oracle_deletion_impact

pytestmark = pytest.mark.django_db


@pytest.fixture
def registries(db):
    return registries_build()


@pytest.fixture
def columns(settings, tmp_path, monkeypatch):
    """Every selection judged over the columns (kept under tmp_path); `calls` counts the judgements."""
    settings.WHATIF_COLUMNS_TAGS = 1
    settings.WHATIF_COLUMNS_DIR = tmp_path
    calls = []
    judge = whatif_columns.whatif_rows

    def counted(*args, **kwargs):
        calls.append(1)
        return judge(*args, **kwargs)

    monkeypatch.setattr(whatif_columns, "whatif_rows", counted)
    return calls


def both_answers(tag_ids: list[int], *, registry_id: int, **kwargs) -> tuple[dict, dict]:
    """The what-if told the registry (so judged over its columns) and the row-by-row statement."""
    new = dataclasses.asdict(deletion_impact(tag_ids=tag_ids, registry_id=registry_id, **kwargs))
    old = dataclasses.asdict(oracle_deletion_impact(tag_ids=tag_ids, **kwargs))
    new.pop("answered_by"), old.pop("answered_by")
    _named_holders(new), _named_holders(old)
    return new, old


def _of(registry: Registry, ids: list[int]) -> list[int]:
    return sorted(Tag.objects.filter(id__in=ids, repository__registry=registry).values_list("id", flat=True))


def test_every_selection_of_a_registry_prices_as_the_row_by_row_statement(registries, columns):
    for registry in registries:
        for name, ids in selections(*registries).items():
            ids = _of(registry, ids)
            if not ids:
                continue
            for by_repository in (False, True):
                before = len(columns)
                new, old = both_answers(ids, by_repository=by_repository, registry_id=registry.id)
                assert len(columns) == before + 1, name  # judged over the columns
                assert new == old, (
                    registry.name,
                    name,
                    by_repository,
                    {k: (new[k], old[k]) for k in new if new[k] != old[k]},
                )
            new, old = both_answers(ids, details=False, registry_id=registry.id)
            assert new == old, (registry.name, name)


@pytest.mark.parametrize("limit", [1, 2, 5])
def test_pages_follow_each_other_as_the_row_by_row_statement(registries, columns, limit):
    hub, _ = registries
    for name in ("every tag of the registry", "random subset 3", "a namespace"):
        ids = _of(hub, selections(*registries)[name])
        pages_compared(both_answers, ids, limit=limit, name=name, registry_id=hub.id)


def test_tags_of_another_registry_are_the_statements_to_answer(registries, columns):
    hub, _ = registries
    both = selections(*registries)["both registries"]
    new, old = both_answers(both, by_repository=True, registry_id=hub.id)
    assert columns and new == old  # judged, found short of the selection, answered by the statement
    assert new["tags"] == len(both)


def test_columns_are_read_again_when_a_scan_changes_the_registry(registries, columns, settings):
    hub, _ = registries
    first = registry_columns(registry_id=hub.id)
    kept = sorted(Path(settings.WHATIF_COLUMNS_DIR).glob("*.npz"))
    assert first is not None and len(kept) == 1 and kept[0].name.endswith(f"-r{hub.id}-v{first.version}.npz")
    assert registry_columns(registry_id=hub.id).version == first.version  # the kept file, read back

    ingest(hub, "team/new", {"1": image("new", [A, layer("new-own", 4242)])})
    second = registry_columns(registry_id=hub.id)
    assert second.version != first.version and len(second.tag_id) == len(first.tag_id) + 1
    files = sorted(Path(settings.WHATIF_COLUMNS_DIR).glob("*.npz"))
    assert [f.name for f in files] == [kept[0].name.replace(f"v{first.version}", f"v{second.version}")]
    ids = tags(repository__registry=hub)
    new, old = both_answers(ids, by_repository=True, registry_id=hub.id)
    assert new == old and new["freed_bytes"] > 0


def test_a_held_blob_without_its_registry_row_is_priced_as_the_statement_prices_it(registries, columns):
    """The statement reads a blob's own size, and no reference, where `RegistryBlob` has no row: so do
    the columns."""
    from analytics.models import RegistryBlob

    hub, _ = registries
    gone = RegistryBlob.objects.filter(registry=hub, blob__digest=A.digest)
    assert gone.exists()
    gone.delete()
    for name in ("every tag of the registry", "a few tags", "random subset 5"):
        ids = _of(hub, selections(*registries)[name])
        new, old = both_answers(ids, by_repository=True, registry_id=hub.id)
        assert new == old, name


def test_a_scans_end_keeps_the_columns_of_a_registry_with_many_tags_and_a_small_selection_reads_none(
    registries, columns, settings
):
    hub, _ = registries
    held = Tag.objects.filter(repository__registry=hub, removed_at=None).count()
    settings.WHATIF_COLUMNS_TAGS = held + 1
    assert columns_keep(registry_id=hub.id) is False and not list(Path(settings.WHATIF_COLUMNS_DIR).iterdir())
    settings.WHATIF_COLUMNS_TAGS = 1
    few = _of(hub, selections(*registries)["a few tags"])
    new, old = both_answers(few, by_repository=True, registry_id=hub.id)
    assert new == old and not columns  # a small selection does not read the columns: the statement prices it
    settings.WHATIF_COLUMNS_TAGS = held
    assert columns_keep(registry_id=hub.id) is True
    assert registry_columns(registry_id=hub.id, read=False) is not None
    settings.WHATIF_COLUMNS_TAGS = 1
    new, old = both_answers(few, by_repository=True, registry_id=hub.id)
    assert new == old and len(columns) == 1  # kept: even a small selection is judged over them
