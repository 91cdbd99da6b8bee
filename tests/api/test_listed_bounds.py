"""What a request may list one by one: at most 1,000 tags or images in a what-if and 100 references for
an engine to pull. Past that it is a 400 that names the field and, for the what-if, the rules that select
more; the list is refused before its items are checked, so a long one costs nothing."""

from __future__ import annotations

import time

import pytest

from analytics.errors import InvalidRequest
from analytics.models import Engine, EngineScan
from analytics.selectors.whatif import MAX_LISTED, TagRule, whatif

pytestmark = pytest.mark.django_db

API = "/api/v1/"
RULES = "registry, namespace, repository, tag_glob, not_seen_days, not_pulled_days, keep_newest"


@pytest.mark.parametrize("field", ["tags", "images"])
def test_a_whatif_listing_more_than_the_cap_is_a_400_pointing_at_rules(field, world, client_user):
    items = [f"team/app{i}:v{i}" for i in range(MAX_LISTED + 1)] if field == "tags" else list(range(1, 1002))
    response = client_user.post(API + "whatif/", {field: items}, format="json")
    assert response.status_code == 400
    (message,) = response.json()[field]
    assert f"at most {MAX_LISTED}" in message and RULES in message


def test_a_long_list_is_refused_before_its_items_are_read(world, client_user):
    # 50,000 tags fit in the body cap; the old answer took seconds per 30,000
    tags = [f"team/app:v{i}" for i in range(50_000)]
    started = time.monotonic()
    response = client_user.post(API + "whatif/", {"tags": tags}, format="json")
    assert response.status_code == 400 and "tags" in response.json()
    assert time.monotonic() - started < 2


def test_the_probe_sized_list_is_refused_by_the_body_cap(world, client_user):
    tags = [f"registry.example/team/app-{i:06d}:v{i}" for i in range(300_000)]
    response = client_user.post(API + "whatif/", {"tags": tags}, format="json")
    assert response.status_code == 413


def test_a_whatif_listing_up_to_the_cap_is_answered(world, client_user):
    tags = ["team/app:1.0", *(f"team/app{i}:v{i}" for i in range(MAX_LISTED - 1))]
    response = client_user.post(API + "whatif/", {"tags": tags}, format="json")
    assert response.status_code == 200 and response.json()["tags"] == 1


def test_every_entry_point_of_the_whatif_has_the_cap(world):
    """The pages and `manage.py whatif` build their rule without the API's serializer."""
    rule = TagRule(registry_id=world.registry.id, tags=tuple(("team/app", f"v{i}") for i in range(1001)))
    with pytest.raises(InvalidRequest, match=RULES):
        whatif(rule=rule)


def test_an_engine_scan_pulling_more_than_100_references_is_a_400(db, client_staff, sent_tasks):
    engine = Engine.objects.create(name="local", endpoint="tcp://127.0.0.1:2375")
    pull = [f"127.0.0.1:5000/app:{i}" for i in range(101)]
    response = client_staff.post(f"{API}engines/{engine.id}/scan/", {"pull": pull}, format="json")
    assert response.status_code == 400 and "pull" in response.json()
    assert not EngineScan.objects.exists() and not sent_tasks
