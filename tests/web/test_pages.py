"""The pages in headless Chromium (Debian's chromium and chromedriver, driven by selenium; no browser
download), served by a live server from a database filled by real scans of the test registry and the
test dockerd. Each page must load without console errors, its charts must hold what the API answers for
the same scope (the browser fetches the API link the page shows), and a screenshot of each page is kept
under test-artifacts/screenshots/. The image page's layer sizes are also checked against skopeo."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from django.contrib.auth import get_user_model

from analytics.engines import services as engine_services
from analytics.models import Registry, RepositoryManifest, Tag
from harness.images import skopeo_inspect_raw
from tests.web.browser import api, embedded, login, page_links, results, scan, series, visit

pytestmark = [pytest.mark.integration]

PASSWORD = "reader-pass-1"


def test_pages_show_what_the_api_answers(
    test_registry, dockerd_server, live_server, browser, transactional_db
):
    # Two trend points with different figures: one repository first, then the whole registry.
    scan(f"{test_registry.host}/base/os")
    scan(test_registry.url)
    engine_scan = engine_services.engine_scan_start(endpoint=dockerd_server.host, inline=True)
    assert engine_scan.status == "succeeded", engine_scan.message
    registry = Registry.objects.get(url=test_registry.url)
    get_user_model().objects.create_user("reader", password=PASSWORD)  # not staff: reads only
    base = live_server.url

    # Login required: the page sends the browser to the login form, which brings it back.
    login(browser, f"{base}/ui/?registry={registry.id}", "reader", PASSWORD)

    # --- Overview
    visit(browser, f"{base}/ui/?registry={registry.id}", "overview")
    rows = embedded(browser, "registries-data")
    logical, stored, saved = series(browser, "registries-chart")
    for i, row in enumerate(rows):
        summary = api(browser, row["api"])
        assert (logical[i], stored[i], saved[i]) == (
            summary["logical_bytes"],
            summary["stored_bytes"],
            summary["saved_bytes"],
        )
    assert any(r["id"] == registry.id and r["images"] > 0 for r in rows)
    engines = embedded(browser, "engines-data")
    e_logical, e_stored, e_saved = series(browser, "engines-chart")
    for i, row in enumerate(engines):
        df = api(browser, row["api"])
        assert (e_logical[i], e_stored[i], e_saved[i]) == (
            df["logical_bytes"],
            df["stored_bytes"],
            df["saved_bytes"],
        )
    trend = results(api(browser, f"{base}/api/v1/trends/?registry={registry.id}"))
    assert len(trend) >= 2 and trend[0]["stored_bytes"] < trend[-1]["stored_bytes"]
    t_logical, t_stored, t_saved = series(browser, "trend-chart")
    assert [p[1] for p in t_stored] == [t["stored_bytes"] for t in trend]
    assert [p[1] for p in t_logical] == [t["logical_bytes"] for t in trend]
    assert [p[1] for p in t_saved] == [t["saved_bytes"] for t in trend]
    for chart, source in [("repos-stored-chart", "repos-stored-data"), ("ns-stored-chart", "ns-stored-data")]:
        bars = embedded(browser, source)
        assert bars, source
        values = series(browser, chart)[0][::-1]  # drawn largest at the top
        assert values == sorted(values, reverse=True)
        for row, value in zip(bars, values, strict=True):
            assert value == api(browser, row["api_stored"])["stored_bytes"], row
            assert f"{base}{row['whatif']}" in page_links(browser)  # the what-if is a link, not a bar
    assert any(r["name"] == "apps/web" for r in embedded(browser, "repos-stored-data"))

    # --- Layers
    visit(browser, f"{base}/ui/layers/?registry={registry.id}", "layers")
    layer_rows = embedded(browser, "layers-data")
    top = api(browser, f"{base}/api/v1/layers/top/?registry={registry.id}&page_size={len(layer_rows)}")
    assert series(browser, "layers-chart")[0][::-1] == [r["images"] for r in top["results"]]
    labels = browser.execute_script("return window.layerlensCharts['layers-chart'].getOption().yAxis[0].data")
    assert any("COPY" in label for label in labels), labels  # labelled with created_by
    assert layer_rows[0]["images"] >= 3  # base/os's layers are in base/os, apps/web and apps/api
    missed = api(browser, f"{base}/api/v1/missed-savings/?registry={registry.id}&page_size=25")
    assert [m["diff_id"] for m in embedded(browser, "missed-data")] == [
        m["diff_id"] for m in missed["results"]
    ]

    # --- Image: apps/web:1.0, compared with skopeo's manifest
    tag = Tag.objects.get(
        repository__registry=registry, repository__name="apps/web", name="1.0", removed_at=None
    )
    holding = RepositoryManifest.objects.get(repository_id=tag.repository_id, manifest_id=tag.manifest_id)
    visit(browser, f"{base}/ui/images/{holding.id}/", "image")
    manifest = json.loads(skopeo_inspect_raw(test_registry.ref("apps/web", "1.0")))
    compressed = series(browser, "stack-chart")[0][::-1]  # drawn base at the bottom
    assert compressed == [layer["size"] for layer in manifest["layers"]]
    api_layers = api(browser, f"{base}/api/v1/images/{holding.id}/layers/")
    assert [x["size"] for x in results(api_layers)] == compressed
    stack = embedded(browser, "stack-data")
    assert [x["shared"] for x in stack][:2] == [True, True]  # base/os's two layers
    assert stack[-1]["shared"] is False and stack[-1]["images"] == 1  # apps/web's own layer
    lineage = api(browser, f"{base}/api/v1/images/{holding.id}/lineage/")
    assert lineage["base"]["repository"] == "base/os"
    assert f"{base}/ui/images/{lineage['base']['image']}/" in page_links(browser)
    partners = api(browser, f"{base}/api/v1/images/{holding.id}/partners/?registry={registry.id}")
    assert series(browser, "partners-chart")[0][::-1] == [p["shared_bytes"] for p in partners]

    # --- Lineage: every node hangs under the base the API names for it
    visit(browser, f"{base}/ui/lineage/?registry={registry.id}", "lineage")
    tree = browser.execute_script(
        "return window.layerlensCharts['lineage-chart'].getOption().series[0].data[0]"
    )
    parent_of: dict[str, str | None] = {}

    def walk(node, parent):
        for child in node.get("children") or []:
            parent_of[child["url"]] = parent
            walk(child, child["url"])

    walk(tree, None)
    nodes = embedded(browser, "lineage-data")
    assert len(parent_of) == len(nodes) and len(nodes) >= 3
    for node in nodes:
        answer = api(browser, node["api"])
        expected = f"/ui/images/{answer['base']['image']}/" if answer["base"] else None
        assert parent_of[node["url"]] == expected, node["name"]

    # --- What-if: apps/api:1.0 chosen by hand frees only its own layer, config and manifest
    visit(browser, f"{base}/ui/whatif/?registry={registry.id}&tags={quote('apps/api:1.0')}", "whatif")
    impact = embedded(browser, "whatif-data")
    link = browser.execute_script("return document.querySelector('p.api a').href")
    answer = api(browser, link)
    assert series(browser, "whatif-chart")[0] == [
        answer["freed_manifest_bytes"],
        answer["freed_blob_bytes"],
        answer["shared_manifest_bytes"],
        answer["shared_bytes"],
    ]
    assert answer["freed_bytes"] + answer["kept_bytes"] == sum(series(browser, "whatif-chart")[0])
    api_manifest = json.loads(skopeo_inspect_raw(test_registry.ref("apps/api", "1.0")))
    raw = skopeo_inspect_raw(test_registry.ref("apps/api", "1.0"))
    own = api_manifest["layers"][-1]["size"] + api_manifest["config"]["size"] + len(raw)
    assert impact["freed_bytes"] == answer["freed_bytes"] == own


def test_pages_need_a_login_unless_anonymous_read(client, db, settings):
    response = client.get("/ui/lineage/")
    assert response.status_code == 302 and response["Location"].startswith("/ui/login/?next=")
    settings.LAYERLENS_ANONYMOUS_READ = True
    response = client.get("/ui/")
    assert response.status_code == 200 and b"anonymous (read only)" in response.content
