"""Numbers a caller may send and what bounds them, so none reaches Python's dates or a bigint column as
an overflow (a 500): every one past its bound is a 400 naming the field."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from analytics.errors import InvalidRequest
from analytics.models import Engine, Registry, RepositoryManifest, Scan
from analytics.registries import MAX_SCAN_INTERVAL, registry_update
from analytics.scans.schedule import due_scans_enqueue

pytestmark = pytest.mark.django_db

API = "/api/v1/"
YEAR = int(MAX_SCAN_INTERVAL.total_seconds())
HUGE = [10**17, 1e300, 10**30, YEAR + 1, "99999999999999999999"]


def _names(response, field: str) -> bool:
    body = response.json()
    return field in body or field in body.get("detail", "")


@pytest.mark.parametrize("value", HUGE)
def test_a_scan_interval_past_a_year_is_a_400_naming_it(value, world, client_staff):
    for url in (f"{API}registries/{world.registry.id}/", f"{API}repositories/{world.app.id}/"):
        response = client_staff.patch(url, {"scan_interval": value}, format="json")
        assert response.status_code == 400 and _names(response, "scan_interval"), (url, response.content)
    response = client_staff.post(
        API + "registries/", {"url": "http://127.0.0.1:5123", "scan_interval": value}, format="json"
    )
    assert response.status_code == 400 and _names(response, "scan_interval")
    assert not Registry.objects.filter(url="http://127.0.0.1:5123").exists()


def test_a_year_is_accepted(world, client_staff):
    url = f"{API}registries/{world.registry.id}/"
    response = client_staff.patch(url, {"tracked": True, "scan_interval": YEAR}, format="json")
    assert response.status_code == 200 and response.json()["scan_interval"] == YEAR


@pytest.mark.parametrize("value", [10**13, "10000000000000", "99999999 00:00:00", YEAR + 1, -5])
def test_an_engine_scan_interval_out_of_range_is_a_400_naming_it(value, db, client_staff):
    body = {"endpoint": "tcp://127.0.0.1:2399", "tracked": True, "scan_interval": value}
    response = client_staff.post(API + "engines/", body, format="json")
    assert response.status_code == 400 and "scan_interval" in response.json(), response.content
    assert not Engine.objects.exists()


def test_no_write_path_stores_an_interval_that_would_stop_the_schedule(world):
    """Beat adds the interval to now for every due target in one transaction: one overflowing interval
    would fail them all."""
    with pytest.raises(InvalidRequest, match="scan_interval is at most"):
        registry_update(registry=world.registry, tracked=True, scan_interval=timedelta(days=10**6))
    with pytest.raises(CommandError, match="--interval is at most"):
        call_command("registry", "add", "http://127.0.0.1:5124", "--track", "--interval", str(10**20))
    registry_update(registry=world.registry, tracked=True, scan_interval=MAX_SCAN_INTERVAL)
    assert due_scans_enqueue()
    assert Scan.objects.filter(registry=world.registry, trigger="schedule").exists()


@pytest.mark.parametrize("value", [10**29, 2**63, 2**50 + 1])
def test_a_deep_budget_past_a_pebibyte_is_a_400_naming_it(value, world, client_staff, sent_tasks):
    body = {"target": "http://127.0.0.1:5999", "deep": True, "deep_budget": value}
    response = client_staff.post(API + "scans/", body, format="json")
    assert response.status_code == 400 and "deep_budget" in response.json()
    assert not Scan.objects.exists() and not sent_tasks


def test_a_deep_budget_past_a_pebibyte_is_refused_by_the_command(world):
    with pytest.raises(CommandError, match="deep_budget"):
        call_command(
            "scan", "http://127.0.0.1:5999", "--deep", "--deep-budget", str(2**60), stdout=io.StringIO()
        )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("not_seen_days", 99999999999),
        ("not_seen_days", 36_501),
        ("not_seen_days", -1),
        ("keep_newest", 10**20),
        ("keep_newest", 1_000_001),
    ],
)
def test_whatif_numbers_out_of_range_are_a_400_naming_them(field, value, world, client_user):
    query = {"registry": str(world.registry.id), field: value}
    response = client_user.post(API + "whatif/", query, format="json")
    assert response.status_code == 400 and field in response.json(), response.content
    response = client_user.get(API + "whatif/", query)
    assert response.status_code == 400 and field in response.json(), response.content


def test_whatif_numbers_at_their_bound_are_answered(world, client_user):
    query = {"registry": str(world.registry.id), "not_seen_days": 36_500, "keep_newest": 1_000_000}
    response = client_user.post(API + "whatif/", query, format="json")
    assert response.status_code == 200 and response.json()["tags"] == 0


@pytest.mark.parametrize("value", [10**30, 2**63, 0, -1])
def test_whatif_image_ids_out_of_range_are_a_400_naming_them(value, world, client_user):
    response = client_user.post(API + "whatif/", {"images": [value]}, format="json")
    assert response.status_code == 400 and "images" in response.json(), response.content


def test_a_top_n_limit_below_one_is_a_400_and_above_the_cap_is_capped(world, client_user):
    holding = RepositoryManifest.objects.filter(repository=world.app).first()
    url = f"{API}images/{holding.id}/partners/"
    for value in ("-1", "0", "-" + "9" * 30):
        response = client_user.get(url, {"limit": value})
        assert response.status_code == 400 and "limit" in response.json()["detail"]
    assert client_user.get(url, {"limit": "9" * 30}).status_code == 200
