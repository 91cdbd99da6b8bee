"""`POST /api/v1/policies/preview/`: a policy pasted as JSON or text previewed over a scope, every malformed
kind refused with a 400 naming the problem (a body past the cap a 413), readers only, nothing saved."""

from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.utils import timezone

from analytics.models import Registry
from tests.policies.support import build

pytestmark = pytest.mark.django_db

URL = "/api/v1/policies/preview/"
KEEP_ONE = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"},
        }
    ]
}
# each image built by `build`: one 1,000-byte layer of its own, a 1,001-byte config, a 500-byte manifest
IMAGE_BYTES = 1000 + 1001 + 500


@pytest.fixture
def registry():
    registry = Registry.objects.create(name="r", url="http://127.0.0.1:5997")
    build(
        registry,
        {
            "team/app": [{"image": f"a{i}", "tags": [f"1.{i}"], "pushed_days_ago": i} for i in range(1, 5)],
            "team/web": [{"image": f"w{i}", "tags": [f"2.{i}"], "pushed_days_ago": i} for i in range(1, 3)],
            "other/cli": [{"image": "c1", "tags": ["1"], "pushed_days_ago": 9}],
        },
        timezone.now(),
    )
    return registry


def _counts() -> dict[str, int]:
    return {m._meta.label: m.objects.count() for m in apps.get_app_config("analytics").get_models()}


def test_a_policy_as_json_or_as_text_is_previewed_per_repository_and_in_total(registry, client_user):
    before = _counts()
    answer = client_user.post(URL, {"policy": KEEP_ONE, "registry": "r"}, format="json")
    assert answer.status_code == 200, answer.content
    data = answer.json()
    assert data["format"] == "ecr"
    assert sorted((r, t) for r, t, _ in data["removed_tags"]) == [
        ("team/app", "1.2"),
        ("team/app", "1.3"),
        ("team/app", "1.4"),
        ("team/web", "2.2"),
    ]
    impact = data["impact"]
    assert impact["freed_bytes"] == 4 * IMAGE_BYTES
    assert [(r["repository"], r["tags"], r["freed_bytes"]) for r in impact["repositories"]] == [
        ("team/app", 3, 3 * IMAGE_BYTES),
        ("team/web", 1, IMAGE_BYTES),
    ]
    assert impact["shared_freed"]["freed_bytes"] == 0 and impact["repositories_total"] == 2
    # no index stays: the 2.8 collector frees the same
    assert data["delete_untagged"]["freed_bytes"] == impact["freed_bytes"]
    assert data["delete_untagged"]["trap_bytes"] == 0
    assert data["push_times"]["source"] == "scans"
    assert _counts() == before  # nothing saved

    # the same policy pasted as text, in one namespace, lists bounded to one row
    text = json.dumps(KEEP_ONE, indent=4)
    narrow = client_user.post(
        URL, {"policy": text, "registry": "r", "namespace": "team", "details_limit": 1}, format="json"
    ).json()
    assert len(narrow["removed_tags"]) == 1 and narrow["removed_tags_more"] is True
    assert narrow["impact"]["tags"] == 4
    listed = narrow["impact"]["repositories"]
    assert len(listed) == 1 and narrow["impact"]["repositories_total"] == 2
    assert (
        listed[0]["freed_bytes"]
        + narrow["impact"]["repositories_rest"]["freed_bytes"]
        + narrow["impact"]["shared_freed"]["freed_bytes"]
        == narrow["impact"]["freed_bytes"]
        == 4 * IMAGE_BYTES
    )
    gitlab = {"name_regex": "1\\..*", "keep_n": 1}
    one_repo = client_user.post(
        URL, {"policy": gitlab, "format": "gitlab", "registry": "r", "repository": "team/app"}, format="json"
    ).json()
    assert sorted(t for _, t, _ in one_repo["removed_tags"]) == ["1.2", "1.3", "1.4"]


def _ecr(selection: dict, **rule) -> dict:
    return {"rules": [{"rulePriority": 1, "selection": selection, "action": {"type": "expire"}, **rule}]}


ANY = {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1}
MALFORMED = [
    ({"policy": _ecr({**ANY, "countNumber": "5"})}, "$.rules[0].selection.countNumber: must be a whole"),
    ({"policy": _ecr({**ANY, "tagPrefix": ["x"]})}, "$.rules[0].selection.tagPrefix: unknown field"),
    ({"policy": _ecr(ANY, color="red")}, "$.rules[0].color: unknown field"),
    ({"policy": {"name_regex": "[a-"}}, "$.name_regex: not a regular expression"),
    ({"policy": {"name_regex": "(a+)+$"}}, "$.name_regex: a repeated group holding a repeat"),
    ({"policy": {"name_regex": "(?<=v)1"}}, "no lookbehind"),
    ({"policy": '{"rules": [\n  {"rulePriority": 1,}\n]}'}, "line 2, column 22: not JSON"),
    ({"policy": "x" * 70_000}, "at most 65,536 are read"),
    ({"policy": [1, 2]}, "cannot tell this policy's format"),
    ({"policy": 7}, "cannot tell this policy's format"),
    ({"policy": KEEP_ONE, "format": "quay"}, "format"),
    ({"policy": KEEP_ONE, "format": "gitlab"}, "$.rules: unknown field"),
    ({"policy": KEEP_ONE, "registry": "nowhere"}, "nowhere"),
    ({"policy": KEEP_ONE, "registry": None}, "registry"),
    ({"policy": KEEP_ONE, "details_limit": 0}, "details_limit"),
    ({"registry": "r"}, "policy"),
]


@pytest.mark.parametrize(("body", "named"), MALFORMED, ids=[m[1][:40] for m in MALFORMED])
def test_a_malformed_policy_or_request_is_a_400_naming_the_problem(registry, client_user, body, named):
    before = _counts()
    reply = client_user.post(URL, {"registry": "r", **body}, format="json")
    assert reply.status_code in (400, 404), reply.content
    assert named in json.dumps(reply.json()).replace("\\n", "\n"), reply.json()
    assert _counts() == before


def test_a_one_megabyte_body_is_refused_before_it_is_read(registry, client_user):
    body = json.dumps({"registry": "r", "policy": "x" * (1024 * 1024)})
    reply = client_user.post(URL, body, content_type="application/json")
    assert reply.status_code == 413 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in reply.json()["detail"]
    # just under the cap: read, and refused by the policy's own bound
    body = json.dumps({"registry": "r", "policy": "x" * (1024 * 1024 - 100)})
    reply = client_user.post(URL, body, content_type="application/json")
    assert reply.status_code == 400 and "at most 65,536 are read" in reply.json()["detail"]


def test_a_deeply_nested_policy_is_a_400(registry, client_user):
    nested: object = 1
    for _ in range(12):
        nested = {"a": nested}
    reply = client_user.post(URL, {"registry": "r", "policy": nested}, format="json")
    assert reply.status_code == 400 and "levels" in reply.json()["detail"]


def test_a_scope_past_the_bound_is_a_422_naming_how_to_narrow_it(registry, client_user, settings):
    settings.POLICY_PREVIEW_MAX_HOLDINGS = 3
    reply = client_user.post(URL, {"registry": "r", "policy": KEEP_ONE}, format="json")
    assert reply.status_code == 422 and "Name a namespace or repository" in reply.json()["detail"]
    assert "/api/v1/policies/preview/jobs/" in reply.json()["detail"]
    reply = client_user.post(
        URL, {"registry": "r", "repository": "team/web", "policy": KEEP_ONE}, format="json"
    )
    assert reply.status_code == 200


def test_readers_only(registry, anon_client, settings):
    settings.LAYERLENS_ANONYMOUS_READ = False
    reply = anon_client.post(URL, {"registry": "r", "policy": KEEP_ONE}, format="json")
    assert reply.status_code in (401, 403)


def test_the_schema_documents_it(client_user):
    schema = client_user.get("/api/schema/?format=json").json()
    post = schema["paths"]["/api/v1/policies/preview/"]["post"]
    assert set(post["responses"]) >= {"200", "400", "422"}
    body = post["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert {"policy", "format", "registry", "namespace", "repository"} <= set(
        schema["components"]["schemas"][body]["properties"]
    )
    jobs = schema["paths"]["/api/v1/policies/preview/jobs/"]["post"]
    assert set(jobs["responses"]) >= {"200", "202", "400", "429"}
    assert jobs["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(f"/{body}")


def test_the_whatif_page_previews_a_pasted_policy(registry, user, client):
    client.force_login(user)
    page = client.get("/ui/whatif/", {"registry": registry.id})
    assert page.status_code == 200 and 'id="policy-form"' in page.content.decode()
    before = _counts()
    reply = client.post(
        "/ui/whatif/", {"registry": registry.id, "policy": json.dumps(KEEP_ONE), "namespace": "team"}
    )
    text = " ".join(reply.content.decode().split())
    assert reply.status_code == 200, text
    body = {"registry": "r", "namespace": "team", "policy": KEEP_ONE}
    api = client.post(URL, body, content_type="application/json").json()
    assert f"removes {api['impact']['tags']} tags" in text
    for r in api["impact"]["repositories"]:
        assert f"<td>{r['repository']}</td><td>{r['tags']}</td><td>{r['manifests_untagged']}</td>" in text
    for repository, tag, _ in api["removed_tags"]:
        assert f"<td>{repository}:{tag}</td>" in text
    assert "garbage-collect --delete-untagged</code>" in text
    assert _counts() == before
    bad = client.post("/ui/whatif/", {"registry": registry.id, "policy": '{"name_regex": "(a+)+$"}'})
    assert bad.status_code == 400
    assert "$.name_regex: a repeated group holding a repeat" in bad.content.decode()
    assert "(a+)+$" in bad.content.decode()  # the form shows the policy again
    client.logout()
    assert client.post("/ui/whatif/", {"registry": registry.id, "policy": "{}"}).status_code == 302
