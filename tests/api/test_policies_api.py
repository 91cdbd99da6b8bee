"""Saved cleanup policies through the API, the admin, `manage.py policy` and `/metrics`: staff write, readers
read; a malformed policy is a 400 (a form error, a one-line command error) naming the problem, and no row.

In the API world, deleting team/web's one tag frees image B's manifest, config and own layer:
600 + 1100 + 3000 = 4700 bytes (the base layer stays, image A uses it), known by construction."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from analytics.models import CleanupPolicy, PolicyEvaluation
from analytics.policies.evaluate import registry_policies_evaluate
from analytics.policies.saved import cleanup_policy_create

pytestmark = pytest.mark.django_db

WEB_FREED = 600 + 1100 + 3000
EVERY_TAG = '{"tag_glob": "*"}'
URL = "/api/v1/policies/"


def _body(world, **changes) -> dict:
    return {
        "registry": world.registry.id,
        "name": "web",
        "text": EVERY_TAG,
        "repository": "team/web",
        **changes,
    }


def test_staff_save_a_policy_and_readers_read_it_with_its_text_as_given(world, client_staff, client_user):
    text = '{\n  "rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": '
    text += '"imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]\n}\n'
    reply = client_staff.post(URL, _body(world, name="ecr", text=text, repository=""), format="json")
    assert reply.status_code == 201, reply.content
    created = reply.json()
    assert created["format"] == "ecr" and created["text"] == text and created["latest"] is None
    read = client_user.get(f"{URL}{created['id']}/").json()
    assert read["text"] == text and read["registry_name"] == world.registry.name


def test_a_saved_policy_is_sent_to_a_worker_for_its_first_point(
    world, client_staff, sent_tasks, django_capture_on_commit_callbacks
):
    from workers.tasks import evaluate_cleanup_policy

    with django_capture_on_commit_callbacks(execute=True):
        created = client_staff.post(URL, _body(world), format="json")
    assert created.status_code == 201
    policy_id = created.json()["id"]
    assert sent_tasks == [("workers.tasks.evaluate_cleanup_policy", [policy_id])]
    evaluate_cleanup_policy(policy_id)  # as the worker runs it
    assert client_staff.get(f"{URL}{policy_id}/").json()["latest"]["freed_bytes"] == WEB_FREED
    with django_capture_on_commit_callbacks(execute=True):
        client_staff.patch(f"{URL}{policy_id}/", {"name": "renamed"}, format="json")  # selects the same
        client_staff.patch(f"{URL}{policy_id}/", {"enabled": False}, format="json")
    assert len(sent_tasks) == 1
    with django_capture_on_commit_callbacks(execute=True):
        client_staff.patch(f"{URL}{policy_id}/", {"enabled": True}, format="json")
    assert len(sent_tasks) == 2
    evaluate_cleanup_policy(policy_id)  # the same content version and revision: the same point
    assert PolicyEvaluation.objects.count() == 1
    CleanupPolicy.objects.all().delete()
    evaluate_cleanup_policy(policy_id)  # deleted since: nothing


def test_only_staff_write(world, client_user, anon_client, client_staff):
    assert client_user.post(URL, _body(world), format="json").status_code == 403
    assert anon_client.post(URL, _body(world), format="json").status_code in (401, 403)
    assert not CleanupPolicy.objects.exists()
    policy = cleanup_policy_create(registry=world.registry, name="web", text=EVERY_TAG)
    assert client_user.patch(f"{URL}{policy.id}/", {"enabled": False}, format="json").status_code == 403
    assert client_user.delete(f"{URL}{policy.id}/").status_code == 403
    assert CleanupPolicy.objects.get().enabled
    assert client_staff.patch(f"{URL}{policy.id}/", {"enabled": False}, format="json").status_code == 200
    assert not CleanupPolicy.objects.get().enabled
    assert client_staff.delete(f"{URL}{policy.id}/").status_code == 204
    assert not CleanupPolicy.objects.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"text": '{"tag_glob": 5}'}, "$.tag_glob: must be a string, not a whole number"),
        ({"text": {"tag_glob": "*"}}, "Must be a string"),  # the document, not its text
        ({"name": 5}, "Must be a string"),
        ({"enabled": "maybe"}, "Must be true or false"),
        ({"registry": "one"}, "Incorrect type"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"text": '{"tag_glob": "*", "colour": 1}', "format": "layerlens"}, "$.colour: unknown field"),
        ({"text": '{"name_regex": "(a+)+$"}', "format": "gitlab"}, "a repeated group holding a repeat"),
        ({"text": '{"name_regex": "a(?=b)"}', "format": "gitlab"}, "lookahead"),
        ({"text": '{"name_regex": "[a-"}', "format": "gitlab"}, "$.name_regex"),
        ({"text": '{"tag_glob": "' + "x" * 1_000_000 + '"}'}, "at most 65,536 are read"),
        ({"text": "{"}, "line 1, column 2: not JSON"),
        ({"format": "yaml"}, "is not a valid choice"),
        ({"repository": "team/none"}, "not recorded in registry"),
        ({"name": ""}, "may not be blank"),
    ],
)
def test_a_malformed_policy_is_a_400_naming_the_problem_and_nothing_is_saved(
    world, client_staff, changes, message
):
    reply = client_staff.post(URL, _body(world, **changes), format="json")
    assert reply.status_code == 400, reply.content
    assert message in json.dumps(reply.json()).replace('\\"', '"')
    assert not CleanupPolicy.objects.exists()


def test_a_body_past_the_upload_bound_is_refused_before_it_is_read(world, client_staff):
    body = json.dumps(_body(world, text='{"tag_glob": "' + "x" * (1024 * 1024) + '"}'))
    reply = client_staff.post(URL, body, content_type="application/json")
    assert reply.status_code == 413 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in reply.json()["detail"]
    assert not CleanupPolicy.objects.exists()


def test_an_update_that_does_not_parse_is_a_400_and_changes_nothing(world, client_staff):
    policy = cleanup_policy_create(registry=world.registry, name="web", text=EVERY_TAG)
    reply = client_staff.patch(f"{URL}{policy.id}/", {"text": '{"keep_newest": -1}'}, format="json")
    assert reply.status_code == 400 and "$.keep_newest: must be from 0" in reply.json()["detail"]
    assert CleanupPolicy.objects.get().text == EVERY_TAG
    taken = cleanup_policy_create(registry=world.registry, name="other", text=EVERY_TAG)
    reply = client_staff.patch(f"{URL}{taken.id}/", {"name": "web"}, format="json")
    assert reply.status_code == 409 and CleanupPolicy.objects.get(id=taken.id).name == "other"


def test_the_list_filters_by_registry_and_each_row_carries_its_latest_evaluation(world, client_user):
    from analytics.registries import registry_upsert

    other = registry_upsert(url="http://127.0.0.1:5997")
    cleanup_policy_create(registry=world.registry, name="web", text=EVERY_TAG, repository="team/web")
    cleanup_policy_create(registry=other, name="all", text=EVERY_TAG)
    registry_policies_evaluate(registry_id=world.registry.id)
    rows = client_user.get(URL, {"registry": world.registry.id}).json()["results"]
    assert [r["name"] for r in rows] == ["web"]
    assert rows[0]["latest"]["freed_bytes"] == WEB_FREED and rows[0]["latest"]["tags_removed"] == 1
    assert len(client_user.get(URL).json()["results"]) == 2
    series = client_user.get(f"{URL}{rows[0]['id']}/series/").json()
    assert [p["freed_bytes"] for p in series["results"]] == [WEB_FREED]
    assert client_user.get(URL, {"registry": "x"}).status_code == 400
    assert client_user.get(URL, {"page_size": 1}).json()["next"]
    csv = client_user.get(URL, {"format": "csv"})
    assert "web" in b"".join(csv.streaming_content).decode()


def test_a_page_of_policies_costs_a_few_queries_whatever_their_series(
    world, client_user, django_assert_max_num_queries
):
    for i in range(5):
        cleanup_policy_create(registry=world.registry, name=f"p{i}", text=EVERY_TAG)
        registry_policies_evaluate(registry_id=world.registry.id)
    with django_assert_max_num_queries(6):
        assert len(client_user.get(URL).json()["results"]) == 5


def test_the_browsable_api_renders_the_forms_and_a_body_that_is_no_object_is_a_400(world, client_staff):
    policy = cleanup_policy_create(registry=world.registry, name="web", text=EVERY_TAG)
    registry_policies_evaluate(registry_id=world.registry.id)
    for url in (URL, f"{URL}{policy.id}/", f"{URL}{policy.id}/series/"):
        assert client_staff.get(url, HTTP_ACCEPT="text/html").status_code == 200, url
    reply = client_staff.post(URL, [1, 2], format="json")
    assert reply.status_code == 400 and "must be a JSON object" in reply.json()["detail"]
    reply = client_staff.put(f"{URL}{policy.id}/", {"name": "web"}, format="json")
    assert reply.status_code == 400 and "text" in reply.json()
    form = {"registry": world.registry.id, "name": "form", "text": EVERY_TAG, "csrfmiddlewaretoken": "x"}
    assert client_staff.post(URL, form).status_code == 201  # the browsable API's form, encoded as a form


def test_deleting_a_registry_deletes_its_policies_and_their_series(world, client_staff):
    cleanup_policy_create(registry=world.registry, name="web", text=EVERY_TAG)
    registry_policies_evaluate(registry_id=world.registry.id)
    assert client_staff.delete(f"/api/v1/registries/{world.registry.id}/").status_code == 204
    assert not CleanupPolicy.objects.exists() and not PolicyEvaluation.objects.exists()


# --- the command ------------------------------------------------------------------------------------------


def _policy(*args: str, stdin: str | None = None) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("policy", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_the_command_adds_lists_shows_evaluates_and_removes(world, tmp_path):
    path = tmp_path / "web.json"
    path.write_text(EVERY_TAG)
    out, _ = _policy(
        "add", str(world.registry.id), "--name", "web", "--file", str(path), "--repository", "team/web"
    )
    policy = CleanupPolicy.objects.get()
    assert f"policy {policy.id} web (layerlens) saved" in out and policy.text == EVERY_TAG
    out, _ = _policy("evaluate", str(policy.id))
    assert f"({WEB_FREED:,} B) reclaimable, 1 tags removed" in out
    out, _ = _policy("list")
    assert re.search(
        rf"{policy.id}\s+{re.escape(world.registry.name)}\s+web\s+layerlens\s+team/web\s+yes", out
    )
    assert f"{WEB_FREED:,} B" in out
    out, _ = _policy("show", str(policy.id))
    assert EVERY_TAG in out and f"({WEB_FREED:,} B)" in out
    _policy("remove", str(policy.id))
    assert not CleanupPolicy.objects.exists() and not PolicyEvaluation.objects.exists()


@pytest.mark.parametrize(
    ("text", "args", "message"),
    [
        ('{"tag_glob": 5}', (), "$.tag_glob: must be a string"),
        ('{"name_regex": "(a+)+$"}', ("--format", "gitlab"), "a repeated group holding a repeat"),
        ("{", (), "line 1, column 2: not JSON"),
        (EVERY_TAG, ("--repository", "nope"), "not recorded in registry"),
        ("x" * 70_000, (), "more than 65,536 bytes"),
    ],
)
def test_a_command_that_fails_says_so_in_one_line_and_leaves_no_row(world, tmp_path, text, args, message):
    path = tmp_path / "p.json"
    path.write_text(text)
    with pytest.raises(CommandError, match=re.escape(message)):
        _policy("add", str(world.registry.id), "--name", "n", "--file", str(path), *args)
    assert not CleanupPolicy.objects.exists()
    for bad in (("show", "999"), ("remove", "x"), ("evaluate", "999")):
        with pytest.raises(CommandError, match="no cleanup policy 999|whole number"):
            _policy(*bad)
    with pytest.raises(CommandError, match="cannot read"):
        _policy("add", str(world.registry.id), "--name", "n", "--file", str(tmp_path / "missing.json"))


def test_a_failing_command_prints_one_line_and_no_traceback(tmp_path, settings):
    """As a user runs it: a process of its own (on the test database), on a registry that does not exist."""
    base = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/layerlens").rsplit("/", 1)[0]
    env = {**os.environ, "DATABASE_URL": f"{base}/{settings.DATABASES['default']['NAME']}"}
    path = tmp_path / "p.json"
    path.write_text(EVERY_TAG)
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "policy",
            "add",
            "no-such-registry",
            "--name",
            "n",
            "--file",
            str(path),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == "CommandError: no registry 'no-such-registry'"
    assert "Traceback" not in result.stderr


# --- the admin --------------------------------------------------------------------------------------------


def _form(world, **changes) -> dict:
    return {
        "registry": world.registry.id,
        "name": "web",
        "format": "",
        "text": EVERY_TAG,
        "namespace": "",
        "repository": "team/web",
        "enabled": "on",
        **changes,
    }


def test_the_admin_adds_and_edits_a_policy_and_shows_its_errors_on_the_form(world, admin_client):
    add = reverse("admin:analytics_cleanuppolicy_add")
    assert admin_client.get(add).status_code == 200
    reply = admin_client.post(add, _form(world, text='{"tag_glob": 5}'))
    assert (
        reply.status_code == 200
        and "$.tag_glob: must be a string, not a whole number" in reply.content.decode()
    )
    reply = admin_client.post(add, _form(world, text='{"name_regex": "(a+)+$"}', format="gitlab"))
    assert "a repeated group holding a repeat" in reply.content.decode()
    assert not CleanupPolicy.objects.exists()
    assert admin_client.post(add, _form(world)).status_code == 302
    policy = CleanupPolicy.objects.get()
    assert policy.format == "layerlens" and policy.text == EVERY_TAG
    reply = admin_client.post(add, _form(world))
    assert "already has a policy named" in reply.content.decode() and CleanupPolicy.objects.count() == 1

    registry_policies_evaluate(registry_id=world.registry.id)
    change = reverse("admin:analytics_cleanuppolicy_change", args=[policy.id])
    page = admin_client.get(change).content.decode()
    assert "4.7 kB (4,700 B)" in page and "every evaluation" in page
    reply = admin_client.post(change, _form(world, text='{"tag_glob": "*", "keep_newest": 0}'))
    assert reply.status_code == 302
    policy.refresh_from_db()
    assert policy.revision == 2 and "keep_newest" in policy.text
    evaluations = reverse("admin:analytics_policyevaluation_changelist")
    assert admin_client.get(evaluations, {"policy__id__exact": policy.id}).status_code == 200
    assert admin_client.get(reverse("admin:analytics_policyevaluation_add")).status_code == 403


# --- /metrics ---------------------------------------------------------------------------------------------


def test_metrics_show_each_policys_reclaimable_bytes_with_escaped_labels(
    world, client, admin_client, settings
):
    name = 'web "all" \\ tags'
    policy = cleanup_policy_create(registry=world.registry, name=name, text=EVERY_TAG, repository="team/web")
    cold = cleanup_policy_create(registry=world.registry, name="cold", text='{"not_pulled_days": 30}')
    registry_policies_evaluate(registry_id=world.registry.id)
    text = admin_client.get("/metrics").content.decode()
    labels = f'{{policy="web \\"all\\" \\\\ tags",registry="{world.registry.name}"}}'
    assert f"layerlens_policy_reclaimable_bytes{labels} {float(WEB_FREED)}" in text
    assert f"layerlens_policy_evaluation_refused{labels} 0.0" in text
    cold_labels = f'{{policy="cold",registry="{world.registry.name}"}}'
    assert f"layerlens_policy_evaluation_refused{cold_labels} 1.0" in text
    assert f"layerlens_policy_reclaimable_bytes{cold_labels}" not in text  # never evaluated with figures

    settings.LAYERLENS_METRICS_TOKEN = ""
    anyone = client.get("/metrics").content.decode()
    assert world.registry.name not in anyone and "tags" not in anyone.split("layerlens_policy")[1]
    assert f'layerlens_policy_reclaimable_bytes{{policy_id="{policy.id}"}} {float(WEB_FREED)}' in anyone
    assert f'layerlens_policy_evaluation_refused{{policy_id="{cold.id}"}} 1.0' in anyone
