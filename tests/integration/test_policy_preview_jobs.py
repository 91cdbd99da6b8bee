"""A cleanup policy previewed as a job, end to end with a real Celery worker: a scope past the request's
bound is refused by `policies/preview/` and previewed by `policies/preview/jobs/`, whose result has the
figures known by construction; the same policy again is the same job; a malformed policy makes no job; a
policy the data cannot answer fails its job with the refusal's sentence."""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.utils import timezone
from rest_framework.test import APIClient

from analytics.models import Registry, WhatIfJob
from tests.api.test_policy_preview_api import IMAGE_BYTES, KEEP_ONE
from tests.integration.test_whatif_jobs import poll
from tests.policies.support import build
from tests.policies.test_policy_preview import HARBOR_PULLS

URL = "/api/v1/policies/preview/jobs/"


def test_a_policy_past_the_request_bound_is_previewed_by_a_worker(celery_worker, settings):
    Registry.objects.create(name="r", url="http://127.0.0.1:5997")
    build(
        Registry.objects.get(name="r"),
        {
            "team/app": [{"image": f"a{i}", "tags": [f"1.{i}"], "pushed_days_ago": i} for i in range(1, 5)],
            "team/web": [{"image": f"w{i}", "tags": [f"2.{i}"], "pushed_days_ago": i} for i in range(1, 3)],
            "other/cli": [{"image": "c1", "tags": ["1"], "pushed_days_ago": 9}],
        },
        timezone.now(),
    )
    user = get_user_model().objects.create_user("reader", password="x-very-long-password-1")
    client = APIClient()
    client.force_authenticate(user)
    settings.POLICY_PREVIEW_MAX_HOLDINGS = 3  # the request's bound (this process's): 7 images are past it
    body = {"policy": KEEP_ONE, "registry": "r"}
    refused = client.post("/api/v1/policies/preview/", body, format="json")
    assert refused.status_code == 422 and URL in refused.json()["detail"]

    created = client.post(URL, body, format="json")
    assert created.status_code == 202, created.content
    assert created["Location"].endswith(f"/api/v1/whatif/jobs/{created.json()['id']}/")
    job = poll(client, created["Location"])
    assert job["status"] == "succeeded", job
    assert (job["phase"], job["steps_done"], job["steps_total"]) == ("done", 3, 3)
    assert job["rule"] is None and job["policy"]["format"] == "ecr" and "text" not in job["policy"]
    preview = job["result"]
    assert preview["format"] == "ecr" and job["tags_selected"] == preview["impact"]["tags"] == 4
    assert sorted((r, t) for r, t, _ in preview["removed_tags"]) == [
        ("team/app", "1.2"),
        ("team/app", "1.3"),
        ("team/app", "1.4"),
        ("team/web", "2.2"),
    ]
    impact = preview["impact"]
    assert impact["freed_bytes"] == 4 * IMAGE_BYTES
    assert [(r["repository"], r["tags"], r["freed_bytes"]) for r in impact["repositories"]] == [
        ("team/app", 3, 3 * IMAGE_BYTES),
        ("team/web", 1, IMAGE_BYTES),
    ]
    assert preview["delete_untagged"]["freed_bytes"] == 4 * IMAGE_BYTES
    assert preview["push_times"]["source"] == "scans"

    # the same policy (as text this time, spaced otherwise) over the same scope: the kept job, not run again
    again = client.post(URL, {"policy": json.dumps(KEEP_ONE), "registry": "r"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == job["id"]
    other_scope = client.post(URL, {**body, "namespace": "team"}, format="json")
    assert other_scope.status_code == 202 and other_scope.json()["id"] != job["id"]
    assert poll(client, other_scope["Location"])["result"]["impact"]["freed_bytes"] == 4 * IMAGE_BYTES

    jobs_before = WhatIfJob.objects.count()
    malformed = client.post(URL, {"policy": {"rules": [{"rulePriority": 1}]}, "registry": "r"}, format="json")
    assert malformed.status_code == 400 and malformed.json()["detail"] == "$.rules[0]: selection is required"
    assert WhatIfJob.objects.count() == jobs_before  # no job for a policy that does not parse

    pulls = client.post(URL, {"policy": HARBOR_PULLS, "registry": "r"}, format="json")
    failed = poll(client, pulls["Location"])
    assert failed["status"] == "failed" and failed["result"] is None
    assert failed["error"].startswith("this policy reads pulls, and Layerlens counts none for r")
    assert "\n" not in failed["error"] and "Traceback" not in failed["error"]
