"""The overview draws each saved cleanup policy's series: in headless Chromium, the chart holds the points
the API's `policies/{id}/series/` answers, which are what deleting the selection frees by construction:

    team/web:latest -> image B: manifest 600, config 1100, layers base 10000 (image A's too) + web 3000

so a policy deleting team/web's tags frees 4700 bytes; once team/web also holds image C (manifest 300,
config 1200, layer 4000), 10200."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from analytics.policies.evaluate import registry_policies_evaluate
from analytics.policies.saved import cleanup_policy_create
from analytics.registries import registry_upsert
from harness import records as f
from tests.web.browser import api, embedded, login, results, series, visit

pytestmark = [pytest.mark.integration]

PASSWORD = "reader-pass-2"


def test_the_overview_draws_each_policys_series_as_the_api_answers(live_server, browser, transactional_db):
    registry = registry_upsert(url="http://127.0.0.1:5996")
    base = f.layer("base", 10_000)
    a = f.image("a", layers=[base, f.layer("app", 2_000)], config_size=1_000, manifest_size=500)
    b = f.image("b", layers=[base, f.layer("web", 3_000)], config_size=1_100, manifest_size=600)
    c = f.image("c", layers=[f.layer("c", 4_000)], config_size=1_200, manifest_size=300)
    f.ingest(registry, "team/app", {"1.0": a})
    f.ingest(registry, "team/web", {"latest": b})
    web = cleanup_policy_create(
        registry=registry, name="web", text='{"tag_glob": "*"}', repository="team/web"
    )
    cleanup_policy_create(registry=registry, name="cold", text='{"not_pulled_days": 30}')
    registry_policies_evaluate(registry_id=registry.id)
    f.ingest(registry, "team/web", {"latest": b, "next": c})
    registry_policies_evaluate(registry_id=registry.id)
    get_user_model().objects.create_user("reader", password=PASSWORD)

    url = f"{live_server.url}/ui/?registry={registry.id}"
    login(browser, url, "reader", PASSWORD)
    visit(browser, url, "overview-policies")
    drawn = {p["name"]: p for p in embedded(browser, "policies-data")}
    assert set(drawn) == {"cold", "web"}
    cold_line, web_line = series(browser, "policies-chart")  # by name
    assert cold_line == []  # refused twice (no pulls counted): no figure to draw
    assert "reads pulls" in drawn["cold"]["latest"]["error"]
    points = results(api(browser, drawn["web"]["api"]))[::-1]  # the API: newest first
    assert [p[1] for p in web_line] == [p["freed_bytes"] for p in points] == [4_700, 4_700 + 5_500]
    assert len(points) == 2 and drawn["web"]["api"].endswith(f"/policies/{web.id}/series/")
    text = browser.find_element("css selector", "main").text
    assert "10.2 kB" in text and "refused: this policy reads pulls" in text
