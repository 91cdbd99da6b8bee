"""Saved policies: a policy that does not parse is never saved; a saved one is evaluated into its series,
once per content version, its failures recorded as points instead of raised.

    team/app:1.0, team/app:latest -> image A: manifest 500, config 1000, layers base 10000 + app 2000
    team/web:latest               -> image B: manifest 600, config 1100, layers base 10000 + web 3000

Deleting team/web's tags frees image B's manifest, config and own layer: 600 + 1100 + 3000 = 4700 bytes
(the base layer stays: image A uses it), known by construction."""

from __future__ import annotations

import json

import pytest

from analytics.errors import Conflict, InvalidPolicy, InvalidRequest
from analytics.models import CleanupPolicy, PolicyEvaluation
from analytics.policies.evaluate import policy_evaluate, registry_policies_evaluate
from analytics.policies.preview import policy_parse, policy_preview
from analytics.policies.saved import cleanup_policy_create, cleanup_policy_update
from analytics.registries import registry_upsert
from harness import records as f

pytestmark = pytest.mark.django_db

WEB_FREED = 600 + 1100 + 3000
EVERY_TAG = json.dumps({"tag_glob": "*"})


@pytest.fixture
def registry():
    registry = registry_upsert(url="http://127.0.0.1:5998")
    base = f.layer("base", 10_000)
    a = f.image("a", layers=[base, f.layer("app", 2_000)], config_size=1_000, manifest_size=500)
    b = f.image("b", layers=[base, f.layer("web", 3_000)], config_size=1_100, manifest_size=600)
    f.ingest(registry, "team/app", {"1.0": a, "latest": a})
    f.ingest(registry, "team/web", {"latest": b})
    return registry


def test_a_policy_is_saved_with_its_text_as_given_and_its_format_guessed(registry):
    text = '{\n  "tag_glob":   "*" }\n'
    policy = cleanup_policy_create(registry=registry, name="all web", text=text, repository="team/web")
    policy.refresh_from_db()
    assert policy.text == text and policy.format == "layerlens" and policy.revision == 1


@pytest.mark.parametrize(
    ("text", "format", "message"),
    [
        ('{"tag_glob": 5}', None, r"\$.tag_glob: must be a string, not a whole number"),
        ('{"name_regex": "(a+)+$"}', "gitlab", r"\$.name_regex: a repeated group holding a repeat"),
        ('{"name_regex": "(?=x)"}', "gitlab", "lookahead"),
        ('{"rules": [{"rulePriority": 1, "color": 1}]}', "ecr", r"\$.rules\[0\].color: unknown field"),
        ('{"tag_glob": "*",}', None, "line 1, column 18: not JSON"),
        ('{"tag_glob": "' + "x" * 1_000_000 + '"}', None, "at most 65,536 are read"),
        ("", None, "the policy is empty"),
        ('{"tag_glob": "\ud800"}', None, "lone surrogate"),
        ('{"tag_glob": "*"}', "yaml", "format must be one of"),
        (5, None, "must be a string"),
    ],
)
def test_a_policy_that_does_not_parse_is_refused_and_nothing_is_saved(registry, text, format, message):
    with pytest.raises(InvalidPolicy, match=message):
        cleanup_policy_create(registry=registry, name="bad", text=text, format=format)
    assert not CleanupPolicy.objects.exists()


def test_names_and_scopes_are_checked_and_nothing_is_saved(registry):
    for kwargs, message in [
        ({"name": ""}, "needs a name"),
        ({"name": "x" * 101}, "at most 100"),
        ({"name": "a\nb"}, "control characters"),
        ({"repository": "team/nope"}, "not recorded in registry"),
        ({"repository": "team/web", "namespace": "other"}, "not in namespace"),
        ({"namespace": "a b"}, "no spaces"),
    ]:
        with pytest.raises(InvalidRequest, match=message):
            cleanup_policy_create(registry=registry, **{"name": "n", "text": EVERY_TAG, **kwargs})
    assert not CleanupPolicy.objects.exists()
    cleanup_policy_create(registry=registry, name="n", text=EVERY_TAG)
    with pytest.raises(Conflict, match="already has a policy named 'n'"):
        cleanup_policy_create(registry=registry, name="n", text=EVERY_TAG)
    assert CleanupPolicy.objects.count() == 1


def test_an_update_that_does_not_parse_changes_nothing(registry):
    policy = cleanup_policy_create(registry=registry, name="n", text=EVERY_TAG)
    with pytest.raises(InvalidPolicy, match="not JSON"):
        cleanup_policy_update(policy=policy, text="{")
    policy.refresh_from_db()
    assert policy.text == EVERY_TAG and policy.revision == 1
    cleanup_policy_update(policy=policy, name="renamed")
    policy.refresh_from_db()
    assert policy.revision == 1  # a name selects nothing
    cleanup_policy_update(policy=policy, repository="team/web")
    policy.refresh_from_db()
    assert policy.revision == 2 and policy.repository == "team/web"


def test_an_evaluation_records_what_the_what_if_frees_once_per_content_version(registry):
    policy = cleanup_policy_create(registry=registry, name="web", text=EVERY_TAG, repository="team/web")
    point = policy_evaluate(policy=policy)
    assert point.error == "" and point.freed_bytes == WEB_FREED
    assert (point.tags_removed, point.manifests_freed, point.blobs_freed) == (1, 1, 2)
    web_id = registry.repositories.get(name="team/web").id
    preview = policy_preview(policy=policy_parse(EVERY_TAG), registry_id=registry.id, repository_id=web_id)
    assert preview.impact.freed_bytes == point.freed_bytes

    # again at the same content version (a retried task, a rescan that changed nothing): the same point
    assert registry_policies_evaluate(registry_id=registry.id)[0].id == point.id
    assert PolicyEvaluation.objects.count() == 1

    # the registry changes: team/web gains a tag on a new image (300 + 1200 + 4000 more freed)
    b = f.image(
        "b", layers=[f.layer("base", 10_000), f.layer("web", 3_000)], config_size=1_100, manifest_size=600
    )
    c = f.image("c", layers=[f.layer("c", 4_000)], config_size=1_200, manifest_size=300)
    f.ingest(registry, "team/web", {"latest": b, "next": c})
    second = registry_policies_evaluate(registry_id=registry.id)[0]
    assert second.id != point.id and second.freed_bytes == WEB_FREED + 300 + 1_200 + 4_000
    assert second.content_version > point.content_version
    assert PolicyEvaluation.objects.count() == 2


def test_disabled_policies_are_not_evaluated(registry):
    cleanup_policy_create(registry=registry, name="off", text=EVERY_TAG, enabled=False)
    assert registry_policies_evaluate(registry_id=registry.id) == []
    assert not PolicyEvaluation.objects.exists()


def test_a_policy_reading_pulls_with_none_counted_is_recorded_as_refused_not_raised(registry):
    policy = cleanup_policy_create(registry=registry, name="cold", text=json.dumps({"not_pulled_days": 30}))
    point = registry_policies_evaluate(registry_id=registry.id)[0]
    assert point.freed_bytes is None and "reads pulls, and Layerlens counts none" in point.error
    assert point.policy_id == policy.id


def test_a_regex_that_times_out_at_evaluation_is_recorded_as_refused(registry):
    # overlapping alternatives under a repeat: past the shape check at save, stopped by the match timeout
    cleanup_policy_create(
        registry=registry, name="slow", format="gitlab", text=json.dumps({"name_regex": "(a|a)*c"})
    )
    image = f.image("slow", layers=[f.layer("slow", 100)])
    f.ingest(registry, "team/slow", {"a" * 60 + "cb": image})
    point = registry_policies_evaluate(registry_id=registry.id)[0]
    assert point.freed_bytes is None and "took over 50 ms" in point.error


def test_an_evaluation_past_its_time_is_recorded_as_refused_and_a_later_one_replaces_it(registry, settings):
    policy = cleanup_policy_create(registry=registry, name="web", text=EVERY_TAG, repository="team/web")
    settings.POLICY_EVALUATION_SECONDS = 1e-9
    point = policy_evaluate(policy=policy)
    assert point.freed_bytes is None and "took longer than" in point.error
    settings.POLICY_EVALUATION_SECONDS = 60
    again = policy_evaluate(policy=policy)
    assert again.id == point.id and again.error == "" and again.freed_bytes == WEB_FREED
    assert PolicyEvaluation.objects.count() == 1


def test_a_repository_the_registry_dropped_is_recorded_as_refused(registry):
    policy = cleanup_policy_create(registry=registry, name="web", text=EVERY_TAG, repository="team/web")
    registry.repositories.filter(name="team/web").delete()
    point = policy_evaluate(policy=policy)
    assert "no longer recorded" in point.error


def test_a_series_keeps_its_latest_points(registry, settings):
    settings.POLICY_SERIES_KEEP = 2
    policy = cleanup_policy_create(registry=registry, name="web", text=EVERY_TAG, repository="team/web")
    points = []
    for i in range(4):
        image = f.image(f"n{i}", layers=[f.layer(f"n{i}", 100 * (i + 1))])
        f.ingest(registry, f"team/n{i}", {"1": image})  # a new content version each time
        points.append(policy_evaluate(policy=policy).id)
    assert list(PolicyEvaluation.objects.order_by("at").values_list("id", flat=True)) == points[-2:]
