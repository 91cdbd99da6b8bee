"""The hostile registry's auth and transport cases, scanned through the services as a worker would."""

from __future__ import annotations

import pytest
from django.test import override_settings

from analytics.models import Scan, ScanError, Tag
from analytics.scans.start import scan_start_inline
from tests.support.hostile_registry import SLOW_SECONDS, hostile_registry

pytestmark = pytest.mark.integration


def scan_inline(target: str, **credentials) -> Scan:
    return scan_start_inline(target=target, **credentials)


@pytest.mark.django_db
def test_redirects_throttling_and_a_metadata_redirect_in_one_repository():
    with hostile_registry() as reg:
        host = reg.base_url.removeprefix("http://")
        scan = scan_inline(f"{host}/transport/app", username="scanner", password="pa55")
        requests = list(reg.requests)
        seen = dict(reg.authorization)

    errors = {e.reference: (e.kind, e.message) for e in ScanError.objects.filter(scan=scan)}
    # The one bad tag fails alone, with a message naming the refused address and the way out.
    assert set(errors) == {"to-metadata"}
    kind, message = errors["to-metadata"]
    assert kind == "PolicyError" and "169.254.169.254" in message and "link-local" in message
    assert scan.status == Scan.Status.PARTIAL
    assert set(Tag.objects.filter(repository__name="transport/app").values_list("name", flat=True)) == {
        "v1",
        "redirected",
        "throttled",
    }
    # The cross-origin redirect target got the config, and no credentials; the signature stays out of errors.
    (storage_path,) = seen
    assert seen[storage_path] is None
    assert not any("SECRETSIG" in m for _, m in errors.values())
    # The 429 was asked again after its Retry-After, once.
    assert requests.count("/v2/transport/app/manifests/throttled") == 2


@pytest.mark.django_db
@override_settings(REGISTRY_TIMEOUT_SECONDS=SLOW_SECONDS / 4)
def test_slow_reply_hits_the_read_timeout_and_fails_that_repository_only():
    with hostile_registry() as reg:
        host = reg.base_url.removeprefix("http://")
        slow = scan_inline(f"{host}/slow/app")
        good = scan_inline(f"{host}/good/app")
    assert slow.status == Scan.Status.FAILED
    assert "timed out" in slow.message and "ReadTimeout" in slow.message
    assert good.status == Scan.Status.SUCCEEDED and good.images_count > 0


@pytest.mark.django_db
def test_token_realm_on_the_metadata_address_is_never_asked():
    with hostile_registry() as reg:
        host = reg.base_url.removeprefix("http://")
        scan = scan_inline(f"{host}/metadata/app")
        good = scan_inline(f"{host}/good/app")
    assert scan.status == Scan.Status.FAILED
    assert "169.254.169.254" in scan.message and "link-local" in scan.message
    assert good.status == Scan.Status.SUCCEEDED


@pytest.mark.django_db
def test_one_tag_scan_behind_a_refused_realm_fails_the_repository_scan_with_the_policy_message():
    # A one-tag scan lists nothing, so the refusal comes from the tag's own read: still the whole scan.
    with hostile_registry() as reg:
        host = reg.base_url.removeprefix("http://")
        scan = scan_inline(f"{host}/metadata/app:v1")
    assert scan.status == Scan.Status.FAILED
    assert "169.254.169.254" in scan.message and "link-local" in scan.message
    (error,) = ScanError.objects.filter(scan=scan)
    assert error.kind == "PolicyError" and error.reference == ""
