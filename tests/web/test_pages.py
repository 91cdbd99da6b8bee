"""The pages in headless Chromium (Debian's chromium and chromedriver, driven by selenium; no browser
download), served by a live server from a database filled by real scans of the test registry and the
test dockerd. Each page must load without console errors, its charts must hold what the API answers for
the same scope (the browser fetches the API link the page shows), and a screenshot of each page is kept
under test-artifacts/screenshots/. The image page's layer sizes are also checked against skopeo."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from selenium.webdriver.support.ui import WebDriverWait

from analytics import engine_services, services
from analytics.models import Registry, RepositoryManifest, Tag
from tests.support.images import skopeo_inspect_raw
from tests.support.tools import BOOTSTRAP_HINT

pytestmark = [pytest.mark.integration]

SHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"
PASSWORD = "reader-pass-1"


def scan(target: str):
    request = services.scan_request_resolve(target=target)
    scan = services.scan_create(registry=request.registry, repository=request.repository, tag=request.tag)
    done = services.scan_run_inline(scan_id=scan.id)
    assert done.status == "succeeded", list(done.errors.values_list("message", flat=True))
    return done


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("chromium and chromium-driver (Debian) are needed; " + BOOTSTRAP_HINT, pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium's manager then downloads nothing.
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def visit(driver, url: str, shot: str) -> None:
    """Load a page, wait for its charts, fail on any console error, and keep a full-page screenshot."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    assert driver.execute_script("return document.readyState") == "complete"
    charts = driver.execute_script("return Object.keys(window.layerlensCharts || {})")
    expected = driver.execute_script("return document.querySelectorAll('[data-chart]').length")
    assert len(charts) == expected, f"{url}: {len(charts)} of {expected} charts drawn"
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == [], f"{url}: console errors {errors}"
    height = driver.execute_script("return document.documentElement.scrollHeight")
    metrics = {"width": 1400, "height": min(height, 8000), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)  # the whole page in one shot
    SHOTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(SHOTS / f"{shot}.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def api(driver, url: str):
    """The API's answer for a link on the page, fetched by the browser with the user's session."""
    body = driver.execute_async_script(
        """const done = arguments[arguments.length - 1];
        fetch(arguments[0], {headers: {Accept: "application/json"}})
          .then(r => r.json().then(b => done({status: r.status, body: b})),
                e => done({status: 0, body: String(e)}));""",
        url,
    )
    assert body["status"] == 200, (url, body)
    return body["body"]


def series(driver, chart: str) -> list[list]:
    """Each series' data as the chart instance holds it ({value: ...} items unwrapped)."""
    data = driver.execute_script(
        "return window.layerlensCharts[arguments[0]].getOption().series.map(s => s.data)", chart
    )
    return [[d["value"] if isinstance(d, dict) else d for d in s] for s in data]


def embedded(driver, element_id: str):
    return json.loads(
        driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)
    )


def page_links(driver) -> list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll('a')).map(a => a.href)")


def results(body):
    return body["results"] if isinstance(body, dict) and "results" in body else body


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
    browser.get(f"{base}/ui/?registry={registry.id}")
    assert "/ui/login/" in browser.current_url
    browser.find_element("name", "username").send_keys("reader")
    browser.find_element("name", "password").send_keys(PASSWORD)
    browser.find_element("css selector", "form button[type=submit]").click()
    # click() returns before the POST's redirect lands: wait for the browser to leave the form.
    WebDriverWait(browser, 30).until(lambda d: "/ui/login/" not in d.current_url)
    assert browser.current_url == f"{base}/ui/?registry={registry.id}"

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
    for chart, source, key in [
        ("repos-stored-chart", "repos-stored-data", "stored_bytes"),
        ("repos-unique-chart", "repos-unique-data", "unique_bytes"),
        ("ns-stored-chart", "ns-stored-data", "stored_bytes"),
        ("ns-unique-chart", "ns-unique-data", "unique_bytes"),
    ]:
        bars = embedded(browser, source)
        assert bars, source
        values = series(browser, chart)[0][::-1]  # drawn largest at the top
        assert values == sorted(values, reverse=True)
        for row, value in zip(bars, values, strict=True):
            link = row["api_stored"] if key == "stored_bytes" else row["api_unique"]
            answer = api(browser, link)
            assert value == (answer["stored_bytes"] if key == "stored_bytes" else answer["freed_bytes"]), row
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
        answer["shared_bytes"],
    ]
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
