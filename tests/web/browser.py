"""Helpers the browser tests share: scan inline, log in, load a page (charts drawn, no console errors,
a screenshot kept), and read what a chart holds, what a page embeds and what the API answers."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from selenium.webdriver.support.ui import WebDriverWait

from analytics.scans.start import scan_start_inline

SHOTS = Path(settings.BASE_DIR) / "test-artifacts" / "screenshots"


def scan(target: str):
    done = scan_start_inline(target=target)
    assert done.status == "succeeded", list(done.errors.values_list("message", flat=True))
    return done


def login(driver, url: str, username: str, password: str) -> None:
    """Open a page that needs a login, fill the form it redirects to, and land back on the page."""
    driver.get(url)
    assert "/ui/login/" in driver.current_url
    driver.find_element("name", "username").send_keys(username)
    driver.find_element("name", "password").send_keys(password)
    driver.find_element("css selector", "form button[type=submit]").click()
    # click() returns before the POST's redirect lands: wait for the browser to leave the form.
    WebDriverWait(driver, 30).until(lambda d: "/ui/login/" not in d.current_url)
    assert driver.current_url == url


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


def axis(driver, chart: str, name: str = "xAxis") -> list:
    """The category labels of a chart's first x or y axis."""
    return driver.execute_script(
        "return window.layerlensCharts[arguments[0]].getOption()[arguments[1]][0].data", chart, name
    )


def embedded(driver, element_id: str):
    return json.loads(
        driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)
    )


def page_links(driver) -> list[str]:
    return driver.execute_script("return Array.from(document.querySelectorAll('a')).map(a => a.href)")


def results(body):
    return body["results"] if isinstance(body, dict) and "results" in body else body
