"""Schema 1 history stored through ingest: no config blob, so the rows hang off the manifest."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from analytics.ingest.snapshot import snapshot_ingest
from analytics.models import HistoryEntry, Manifest, Registry, Repository
from analytics.selectors.images import image_history, image_layers
from tests.registry.fakes import SCHEMA1_SIGNED, FakeRegistry, fixture
from workers.registry.snapshot import snapshot_repository


@pytest.mark.django_db
def test_schema1_history_is_stored_on_the_manifest_and_listed_like_docker_history():
    body = fixture("schema1_manifest.json")
    doc = json.loads(body)
    reg = FakeRegistry()
    layer = b"busybox layer bytes"
    reg.blobs[doc["fsLayers"][1]["blobSum"]] = layer
    reg.add_manifest("legacy/app", "2016", body, SCHEMA1_SIGNED)
    with reg.client() as client:
        snap = snapshot_repository(client, "legacy/app")
    registry = Registry.objects.create(name="fake", url=reg.base_url)
    repository = Repository.objects.create(registry=registry, name="legacy/app")
    snapshot_ingest(repository=repository, snapshot=snap)

    manifest = Manifest.objects.get(media_type=SCHEMA1_SIGNED)
    assert manifest.config_id is None
    # The fixture's own v1Compatibility entries, read here independently: newest first in the manifest.
    v1 = [json.loads(h["v1Compatibility"]) for h in reversed(doc["history"])]
    rows = list(image_history(manifest_id=manifest.id))
    assert [r.created_by for r in rows] == [" ".join(v["container_config"]["Cmd"]) for v in v1]
    assert [r.created for r in rows] == [datetime.fromisoformat(v["created"][:26] + "+00:00") for v in v1]
    assert [r.empty_layer for r in rows] == [bool(v.get("throwaway")) for v in v1]
    # The one real layer: the oldest row made it, with the blob's size (from the blob store).
    assert (rows[0].layer_digest, rows[0].layer_size) == (doc["fsLayers"][1]["blobSum"], len(layer))
    assert rows[1].layer_digest is None
    (only,) = image_layers(manifest_id=manifest.id)
    assert only.created_by == rows[0].created_by
    assert HistoryEntry.objects.filter(manifest=manifest, config=None).count() == len(doc["history"])

    # A rescan writes nothing twice.
    snapshot_ingest(repository=repository, snapshot=snap)
    assert HistoryEntry.objects.filter(manifest=manifest).count() == len(doc["history"])
