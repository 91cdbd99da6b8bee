"""A what-if job end to end with a real Celery worker: POSTed, queued on the interactive queue, run,
polled to its result, which equals the computation in the request; the same rule again is the same job."""

from __future__ import annotations

import time

from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from analytics.models import Registry, WhatIfJob
from analytics.selectors.whatif import TagRule, whatif
from harness.records import image, index, ingest, layer

A, B, C, D = (layer(n, s) for n, s in [("a", 1000), ("b", 2000), ("c", 300), ("d", 40)])


def poll(client: APIClient, url: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        job = client.get(url).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"the job did not finish: {job}")


def test_a_job_runs_on_a_worker_and_its_result_is_the_computation(celery_worker):
    registry = Registry.objects.create(name="local", url="http://127.0.0.1:5000")
    amd, arm = image("m-amd", [A, C], arch="amd64"), image("m-arm", [A, D], arch="arm64")
    ingest(registry, "apps/web", {"v1": image("base", [A, B]), "v2": image("mid", [A, B, C]), "edge": amd})
    ingest(registry, "multi/app", {"v1": index("multi", [amd, arm])}, extra=[amd, arm])
    user = get_user_model().objects.create_user("reader", password="x-very-long-password-1")
    client = APIClient()
    client.force_authenticate(user)

    rule = {"registry": registry.id, "tag_glob": "v*"}
    created = client.post("/api/v1/whatif/jobs/", rule, format="json")
    assert created.status_code == 202, created.content
    job = poll(client, created["Location"])
    assert job["status"] == "succeeded", job
    assert (job["phase"], job["steps_done"], job["steps_total"]) == ("done", 3, 3)
    expected = whatif(rule=TagRule(registry_id=registry.id, tag_glob="v*"))
    result = job["result"]
    assert job["tags_selected"] == expected.tags == 3
    for name in (
        "tags",
        "manifests_untagged",
        "manifests_freed",
        "blobs_freed",
        "freed_bytes",
        "shared_bytes",
    ):
        assert result[name] == getattr(expected, name), name
    assert [(m["repository"], m["digest"], m["freed"]) for m in result["manifests"]] == [
        (m.repository, m.digest, m.freed) for m in expected.manifests
    ]
    assert result["answered_by"] == "computed" and result["manifests_more"] is False

    again = client.post("/api/v1/whatif/jobs/", rule, format="json")
    assert again.status_code == 200 and again.json()["id"] == job["id"]  # kept: not run again
    assert WhatIfJob.objects.count() == 1

    whole = client.post("/api/v1/whatif/jobs/", {"registry": registry.id}, format="json")
    done = poll(client, whole["Location"])
    assert done["status"] == "succeeded" and done["result"]["answered_by"] == "maintained"
    assert done["result"]["freed_bytes"] == whatif(rule=TagRule(registry_id=registry.id)).freed_bytes
