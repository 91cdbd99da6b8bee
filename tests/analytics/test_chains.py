"""Layer chains are computed in Python in linear time; every value is the one the migration's SQL (a
window `string_agg` per prefix, quadratic in bytes) computes, so no stored chain changes."""

from __future__ import annotations

import pytest
from django.db import connection

from analytics.ingest.chains import chains_fill_layer_counts, chains_refresh, layer_chains
from analytics.models import LayerChain, Manifest, Registry
from harness.records import image, index, ingest, layer

pytestmark = pytest.mark.django_db

# The query of migration 0002 (and of chains_refresh before it was linear), as a SELECT.
REFERENCE_SQL = """
SELECT manifest_id, depth, chain, depth = total FROM (
    SELECT ml.manifest_id,
        row_number() OVER w AS depth,
        count(*) OVER (PARTITION BY ml.manifest_id) AS total,
        encode(sha256(convert_to(string_agg(b.digest, ' ') OVER w, 'UTF8')), 'hex') AS chain
    FROM analytics_manifestlayer ml
    JOIN analytics_blob b ON b.id = ml.blob_id
    JOIN analytics_manifest m ON m.id = ml.manifest_id AND m.kind = 'image'
    WINDOW w AS (PARTITION BY ml.manifest_id ORDER BY ml.position
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
) s
"""


def _reference() -> set[tuple[int, int, str, bool]]:
    with connection.cursor() as cursor:
        cursor.execute(REFERENCE_SQL)
        return {tuple(row) for row in cursor.fetchall()}


def _stored() -> set[tuple[int, int, str, bool]]:
    return set(LayerChain.objects.values_list("manifest_id", "depth", "chain", "is_top"))


def test_chains_are_the_reference_sql_values_for_every_manifest():
    registry = Registry.objects.create(name="chains", url="http://127.0.0.1:5000")
    shared = [layer(f"shared{i}", 100 + i) for i in range(5)]
    images = {
        "one": image("one", shared[:1]),
        "two": image("two", shared[:2]),
        "five": image("five", shared),
        "twice": image("twice", [shared[0], shared[1], shared[0]]),  # one blob at two positions
        "long": image("long", [*shared, *(layer(f"long{i}", i + 1) for i in range(1200))]),
    }
    ingest(registry, "team/a", images)
    arm = image("arm", shared[:3], arch="arm64")
    ingest(registry, "team/b", {"multi": index("multi", [arm])}, extra=[arm])
    # Gaps in positions: depth is the row number, not the position.
    gapped = Manifest.objects.get(digest=images["five"].digest)
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE analytics_manifestlayer SET position = position * 3 + 1000000 WHERE manifest_id = %s",
            [gapped.id],
        )

    written = chains_refresh()

    reference = _reference()
    assert _stored() == reference
    assert written == len(reference) == 1 + 2 + 5 + 3 + 1205 + 3
    assert chains_refresh() == 0  # written once: manifests are immutable
    # each row carries its manifest's layer count (the order of the images derived from a base)
    tops = {m: d for m, d, _, top in reference if top}
    assert set(LayerChain.objects.values_list("manifest_id", "layer_count")) == set(tops.items())
    assert tops[gapped.id] == 5


def test_a_repository_refresh_writes_only_its_own_new_manifests():
    registry = Registry.objects.create(name="chains", url="http://127.0.0.1:5000")
    a = ingest(registry, "team/a", {"1": image("a", [layer("x", 1), layer("y", 2)])})
    ingest(registry, "team/b", {"1": image("b", [layer("z", 3)])})
    assert chains_refresh(repository_ids=[a.id]) == 2
    assert set(LayerChain.objects.values_list("manifest__holdings__repository", flat=True)) == {a.id}
    assert chains_refresh() == 1
    assert _stored() == _reference()


def test_layer_chains_hash_the_space_joined_prefixes():
    import hashlib

    digests = ["sha256:" + c * 64 for c in "abc"]
    expected = [hashlib.sha256(" ".join(digests[:d]).encode()).hexdigest() for d in (1, 2, 3)]
    assert list(layer_chains(digests)) == expected
    assert list(layer_chains([])) == []


def test_rows_written_without_a_layer_count_are_filled():
    """Code older than migration 0027 inserts chains without the column (its default 0) while it runs."""
    registry = Registry.objects.create(name="chains", url="http://127.0.0.1:5000")
    ingest(registry, "team/a", {"1": image("a", [layer("x", 1), layer("y", 2), layer("z", 3)])})
    chains_refresh()
    LayerChain.objects.filter(depth__lt=3).update(layer_count=0)
    assert chains_fill_layer_counts() == 2
    assert set(LayerChain.objects.values_list("depth", "layer_count")) == {(1, 3), (2, 3), (3, 3)}
    assert chains_fill_layer_counts() == 0
