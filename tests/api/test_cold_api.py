"""`cold/`, `not_pulled_days` and the images' pull fields through the API, on the API tests' world
(team/app:1.0 and :latest name image A, team/web:latest image B; they share the base layer)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from analytics import jobs
from analytics.events.pulls import pulls_record
from analytics.models import RegistryEvent, WhatIfJob

pytestmark = pytest.mark.django_db


def pull(world, repository: str, digest: str, ago: timedelta) -> None:
    event = RegistryEvent.objects.create(
        registry=world.registry,
        source=RegistryEvent.Source.DISTRIBUTION,
        key=f"{repository}@{digest}-{ago}",
        action=RegistryEvent.Action.PULL,
        repository=repository,
        digest=digest,
        user_agent="docker/27.3.1",
        occurred_at=timezone.now() - ago,
    )
    pulls_record(registry_id=world.registry.id, events=[event])


@pytest.mark.parametrize(
    "query",
    [
        {"days": "0"},
        {"days": "-3"},
        {"days": "36501"},
        {"days": "thirty"},
        {"page": "2"},
        {"after": "1"},
        {"after": "a.b"},
        {"totals": "maybe"},
        {"page_size": "0"},
    ],
)
def test_bad_parameters_are_a_400_naming_them(world, client_user, query):
    reply = client_user.get("/api/v1/cold/", {"registry": world.registry.id, **query})
    assert reply.status_code == 400
    assert next(iter(query)) in reply.json()["detail"]


def test_unknown_places_are_a_404(world, client_user):
    assert client_user.get("/api/v1/cold/", {"registry": "nowhere:1"}).status_code == 404
    assert client_user.get("/api/v1/cold/", {"repository": "team/nope"}).status_code == 404


def test_whatif_not_pulled_days_is_bounded(world, client_user):
    for days in (0, 36_501, "x"):
        reply = client_user.get("/api/v1/whatif/", {"registry": world.registry.id, "not_pulled_days": days})
        assert reply.status_code == 400 and "not_pulled_days" in reply.json(), reply.json()


def test_cold_answer_with_and_without_pulls(world, client_user):
    cold = client_user.get("/api/v1/cold/", {"registry": world.registry.id}).json()
    assert {r["digest"] for r in cold["results"]} == {world.image_a.digest, world.image_b.digest}
    assert cold["days"] == 30
    assert cold["pulls"]["covered"] is False  # no event yet: nothing says "not pulled"
    assert cold["pulls"]["registries"][0]["counted_since"] is None
    assert cold["totals"]["images"] == 2 and cold["totals"]["tags"] == 3

    pull(world, "team/web", world.image_b.digest, ago=timedelta(days=45))
    pull(world, "team/app", world.image_a.digest, ago=timedelta(days=2))
    cold = client_user.get("/api/v1/cold/", {"registry": world.registry.id}).json()
    assert [r["digest"] for r in cold["results"]] == [world.image_b.digest]
    assert cold["pulls"]["covered"] is True
    # B alone is cold: its own layer, config and manifest go, the base stays (A uses it)
    totals = cold["totals"]
    assert (totals["tags"], totals["freed_bytes"], totals["kept_bytes"]) == (1, 3_000 + 1_100 + 600, 10_000)
    assert totals["logical_bytes"] == 600 + 1_100 + 10_000 + 3_000
    whatif = client_user.get("/api/v1/whatif/", {"registry": world.registry.id, "not_pulled_days": 30}).json()
    assert whatif["freed_bytes"] == totals["freed_bytes"] and whatif["answered_by"] == "computed"
    assert whatif["pulls"]["covered"] is True

    images = client_user.get("/api/v1/images/", {"registry": world.registry.id}).json()["results"]
    pulled = {r["repository_name"]: (r["pulls"], r["last_pulled_at"] is not None) for r in images}
    assert pulled == {"team/app": (1, True), "team/web": (1, True)}
    # a 60-day window is longer than the 45 days counted
    assert (
        client_user.get("/api/v1/cold/", {"registry": world.registry.id, "days": 60}).json()["pulls"][
            "covered"
        ]
        is False
    )


def test_totals_of_a_large_place_point_at_the_jobs(world, client_user, settings, sent_tasks):
    settings.WHATIF_SYNC_HOLDINGS = 1
    cold = client_user.get("/api/v1/cold/", {"registry": world.registry.id}).json()
    assert cold["totals"] is None and "whatif/jobs/" in cold["totals_note"]
    assert len(cold["results"]) == 2  # the list is served all the same

    reply = client_user.post(
        "/api/v1/whatif/jobs/", {"registry": world.registry.id, "not_pulled_days": 30}, format="json"
    )
    assert reply.status_code == 202 and reply.json()["rule"]["not_pulled_days"] == 30
    job_id = reply.json()["id"]
    jobs.whatif_job_run(job_id=job_id)
    job = WhatIfJob.objects.get(id=job_id)
    assert job.status == WhatIfJob.Status.SUCCEEDED, job.error
    assert job.result["tags"] == 3 and job.result["pulls"]["covered"] is False
    settings.WHATIF_SYNC_HOLDINGS = 2000
    totals = client_user.get("/api/v1/cold/", {"registry": world.registry.id}).json()["totals"]
    assert job.result["freed_bytes"] == totals["freed_bytes"]


def test_the_whatif_page_takes_not_pulled_days_and_warns_before_the_window(world, user, client):
    client.force_login(user)
    page = client.get("/ui/whatif/", {"registry": world.registry.id, "not_pulled_days": 30})
    text = " ".join(page.content.decode().split())
    assert page.status_code == 200 and "team/web:latest" in text
    assert "Pulls are counted for less than 30 days (127.0.0.1:5999: no event yet)" in text
    for days in (-1, 36_501):
        assert (
            client.get("/ui/whatif/", {"registry": world.registry.id, "not_pulled_days": days}).status_code
            == 400
        )
