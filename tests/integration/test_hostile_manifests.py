"""Hostile manifests through a whole scan into Postgres: each fails alone with a clear message."""

from __future__ import annotations

import json

import pytest

from analytics.models import HistoryEntry, Manifest, Scan, ScanError, Tag
from tests.integration.test_hostile_registry import scan_inline  # the same scan path, kept in one place
from tests.support.hostile_registry import hostile_registry

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def test_strict_repository_records_each_bad_manifest_and_keeps_the_good_ones() -> None:
    with hostile_registry(strict=True) as reg:
        scan = scan_inline(f"{reg.base_url}/strict/app")
    assert scan.status == Scan.Status.PARTIAL
    errors = {e.reference: e for e in ScanError.objects.filter(scan=scan)}
    assert {ref: e.kind for ref, e in errors.items()} == {
        "nan": "ManifestError",
        "duplicate-key": "ManifestError",
        "oversize": "ProtocolError",
        "sha256:" + "1" * 64: "DigestMismatchError",
    }
    assert "NaN" in errors["nan"].message
    assert "duplicate key 'schemaVersion'" in errors["duplicate-key"].message
    assert "limit" in errors["oversize"].message
    tags = set(Tag.objects.filter(repository__name="strict/app").values_list("name", flat=True))
    assert tags == {"good", "nul-created-by", "self-index"}  # the index itself was read; its child was not

    # NUL and a lone surrogate are gone from what was stored; the rest of the text is intact.
    nul_tag = Tag.objects.select_related("manifest__config").get(name="nul-created-by")
    first = HistoryEntry.objects.get(config=nul_tag.manifest.config, position=0)
    assert first.created_by == "/bin/sh -c #(nop) ADD file:rootfs in /"
    assert nul_tag.manifest.labels["nul"] == "ab \ufffd"
    # the good image is complete
    good = Tag.objects.select_related("manifest").get(name="good").manifest
    assert good.kind == Manifest.Kind.IMAGE and good.manifest_layers.count() == good.layer_count > 0


def test_link_to_another_host_fails_that_repository_with_a_clear_message() -> None:
    with hostile_registry(strict=True) as reg:
        scan = scan_inline(f"{reg.base_url}/linkaway/app")
        asked = list(reg.requests)
    assert scan.status == Scan.Status.FAILED
    assert "another origin" in scan.message and "198.51.100.7" in scan.message
    assert all("198.51.100.7" not in path for path in asked)
    assert json.dumps(scan.message)  # a plain string, recorded
