"""A registry that misbehaves: each bad image fails alone, recorded on the scan; nothing half-written."""

from __future__ import annotations

import pytest

from analytics.models import Manifest, Scan, ScanError, Tag
from analytics.scans.start import scan_start_inline
from tests.support.hostile_registry import hostile_registry


def scan_inline(target: str) -> Scan:
    return scan_start_inline(target=target)


@pytest.mark.django_db
def test_bad_images_fail_alone_and_the_rest_of_the_scan_goes_on():
    with hostile_registry() as reg:
        scan = scan_inline(reg.base_url)

    assert scan.status == Scan.Status.PARTIAL
    by_repo = {c.repository.name: c for c in scan.children.select_related("repository")}
    assert by_repo["good/app"].status == Scan.Status.SUCCEEDED
    assert by_repo["hostile/app"].status == Scan.Status.PARTIAL
    # The looping tag list never ends by itself: that repository fails with a clear message.
    assert by_repo["loop/app"].status == Scan.Status.FAILED
    assert "loop" in by_repo["loop/app"].message.lower()

    errors = dict(ScanError.objects.filter(repository="hostile/app").values_list("reference", "kind"))
    # digest-mismatch (a wrong Docker-Content-Digest on a tag pull) is logged, not an error: the bytes decide
    assert errors == {
        "malformed": "ManifestError",
        "bad-config": "DigestMismatchError",
        "error-500": "HTTPStatusError",
        "schema1": "ManifestError",
    }
    hostile_tags = set(Tag.objects.filter(repository__name="hostile/app").values_list("name", flat=True))
    assert hostile_tags == {"good", "digest-mismatch"}
    # Good content of the same scan is complete: the index and both children, every layer of each image.
    assert Manifest.objects.filter(kind="index").count() == 1
    for manifest in Manifest.objects.filter(kind="image"):
        assert manifest.manifest_layers.count() == manifest.layer_count > 0
    assert scan.errors_count == 5  # four bad tags and the looping repository


@pytest.mark.django_db
def test_rescan_of_hostile_registry_is_idempotent():
    with hostile_registry() as reg:
        scan_inline(reg.base_url)
        manifests = set(Manifest.objects.values_list("digest", flat=True))
        scan_inline(reg.base_url)
    assert set(Manifest.objects.values_list("digest", flat=True)) == manifests
