"""What the shared test registry cannot show: a stale base (its tag moved after an image was built on
it) on the Image page, and missed savings (one layer stored gzip and zstd) on the Layers page. A scratch
registry is filled by skopeo from the test registry, scanned, and the pages are read in headless
Chromium; their figures are compared with the API and with skopeo's manifests."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model

from analytics.models import Registry, RepositoryManifest
from harness.images import manifest_digest, skopeo_copy, skopeo_inspect_config, skopeo_inspect_raw
from harness.registry import RegistryServer
from tests.web.browser import api, axis, embedded, login, results, scan, series, visit

pytestmark = [pytest.mark.integration]

PASSWORD = "reader-pass-2"


@pytest.fixture
def scratch():
    server = RegistryServer().start()
    yield server
    server.cleanup()


def inspect(ref: str) -> tuple[str, dict]:
    raw = skopeo_inspect_raw(ref)
    return manifest_digest(raw), json.loads(raw)


def test_stale_base_and_missed_savings_pages(test_registry, scratch, live_server, browser, transactional_db):
    h = scratch.host
    # zstd first, so skopeo cannot reuse the gzip blobs for it (an OCI manifest: Docker's has no zstd).
    skopeo_copy(
        test_registry.ref("apps/web", "1.0"),
        f"{h}/zstd/web:1",
        *("--format", "oci", "--dest-compress-format", "zstd"),
    )
    for repo, tag in [("base/os", "1"), ("apps/web", "1.0")]:
        skopeo_copy(test_registry.ref(repo, tag), f"{h}/{repo}:{tag}")
    scan(scratch.url)
    old_base, _ = inspect(f"{h}/base/os:1")
    # The base tag moves to other content; apps/web is not rebuilt, so it sits on a stale base.
    skopeo_copy(test_registry.ref("oci/tool", "1"), f"{h}/base/os:1")
    scan(f"{h}/base/os")
    new_base, _ = inspect(f"{h}/base/os:1")
    assert old_base != new_base
    web_digest, web = inspect(f"{h}/apps/web:1.0")
    _, zstd = inspect(f"{h}/zstd/web:1")

    registry = Registry.objects.get(url=scratch.url)
    web_id = RepositoryManifest.objects.get(
        repository__registry=registry, repository__name="apps/web", manifest__digest=web_digest
    ).id
    get_user_model().objects.create_user("reader", password=PASSWORD)
    base = live_server.url
    login(browser, f"{base}/ui/images/{web_id}/", "reader", PASSWORD)

    # --- Image: the warning names the moved tag with the digests the API and skopeo give
    visit(browser, f"{base}/ui/images/{web_id}/", "image-stale-base")
    [row] = api(browser, f"{base}/api/v1/stale-bases/?registry={registry.id}")["results"]
    assert (row["repository"], row["tag"], row["old_digest"], row["new_digest"]) == (
        "base/os",
        "1",
        old_base,
        new_base,
    )
    assert any(a[2] == web_digest for a in row["affected"])
    [warning] = browser.find_elements("css selector", "p.warn.stale")
    assert "base/os:1" in warning.text
    shown = [c.get_attribute("title") for c in warning.find_elements("css selector", "code")]
    assert shown == [old_base, new_base]
    assert old_base[:19] in warning.text and new_base[:19] in warning.text
    # its base chain names the old base (found among untagged holdings), not "no base"
    [chain] = browser.find_elements("css selector", "ol.chain")
    assert f"base/os@{old_base[7:19]}" in chain.text and "no longer tagged" in chain.text
    # zstd/web was never built on base/os's layers (other blobs): no warning on its page
    zstd_id = RepositoryManifest.objects.get(repository__registry=registry, repository__name="zstd/web").id
    browser.get(f"{base}/ui/images/{zstd_id}/")
    assert "zstd/web" in browser.find_element("tag name", "h1").text
    assert browser.find_elements("css selector", "p.warn.stale") == []

    # --- Layers: one missed-savings row per recompressed layer, its bytes from skopeo's manifests
    visit(browser, f"{base}/ui/layers/?registry={registry.id}", "layers-missed-savings")
    missed = results(api(browser, f"{base}/api/v1/missed-savings/?registry={registry.id}&page_size=25"))
    stored, saved = series(browser, "missed-chart")
    assert stored == [m["stored_bytes"] for m in missed]
    assert saved == [m["saved_bytes"] for m in missed]
    labels = axis(browser, "missed-chart")
    assert [label.rstrip("…") for label in labels] == [m["diff_id"][:18] for m in missed]
    assert [m["diff_id"] for m in embedded(browser, "missed-data")] == [m["diff_id"] for m in missed]
    table = "//h2[starts-with(., 'Missed')]/following-sibling::table[1]//tr[td]"
    cells = [row.find_elements("tag name", "td")[-1].text for row in browser.find_elements("xpath", table)]
    assert len(cells) == len(missed) and all("gzip" in c and "zstd" in c for c in cells), cells

    diff_ids = skopeo_inspect_config(f"{h}/apps/web:1.0")["rootfs"]["diff_ids"]
    expected = {}
    for diff_id, gz, zs in zip(diff_ids, web["layers"], zstd["layers"], strict=True):
        assert "zstd" in zs["mediaType"] and gz["digest"] != zs["digest"]
        expected[diff_id] = (gz["size"] + zs["size"], max(gz["size"], zs["size"]))
    assert {m["diff_id"]: (m["stored_bytes"], m["saved_bytes"]) for m in missed} == expected
