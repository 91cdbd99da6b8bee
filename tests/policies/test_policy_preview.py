"""A preview's sources and refusals: push times from registry events when Layerlens keeps them, else
from scans (and the answer says which); rules on pulls refused when pulls are not counted for long
enough; the command's text, JSON and one-line errors."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from analytics.errors import InvalidRequest
from analytics.models import Registry, RegistryEvent
from analytics.policies.preview import policy_parse, policy_preview, policy_totals
from analytics.selectors.whatif import deletion_impact
from tests.policies.support import build

pytestmark = pytest.mark.django_db

KEEP_ONE = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 1},
            "action": {"type": "expire"},
        }
    ]
}


@pytest.fixture
def registry():
    return Registry.objects.create(name="r", url="http://127.0.0.1:5998")


def test_push_events_come_before_what_scans_saw_and_the_answer_says_so(registry):
    now = timezone.now()
    # scans saw "old" later than "new" (a rescan found it), but the registry's push event says it came first
    names = build(
        registry,
        {
            "app": [
                {"image": "old", "tags": ["1"], "pushed_days_ago": 1},
                {"image": "new", "tags": ["2"], "pushed_days_ago": 2},
            ]
        },
        now,
    )
    old = next(d for d, n in names.items() if n == "old")
    policy = policy_parse(json.dumps(KEEP_ONE))
    by_scans = policy_preview(policy=policy, registry_id=registry.id, now=now)
    assert [t for _, t, _ in by_scans.removed_tags] == ["2"]
    assert by_scans.push_times["source"] == "scans" and by_scans.push_times["scans"] == 2

    RegistryEvent.objects.create(
        registry=registry, source="distribution", key="p1", action="push", repository="app", tag="1",
        digest=old, occurred_at=now - timedelta(days=10),
    )  # fmt: skip
    by_events = policy_preview(policy=policy, registry_id=registry.id, now=now)
    assert [t for _, t, _ in by_events.removed_tags] == ["1"]
    assert by_events.push_times == {
        **by_events.push_times,
        "source": "events and scans",
        "events": 1,
        "scans": 1,
    }


def test_bytes_freed_are_the_whatifs_for_the_same_tags(registry):
    now = timezone.now()
    build(
        registry,
        {"app": [{"image": f"i{i}", "tags": [f"t{i}"], "pushed_days_ago": i} for i in range(1, 5)]},
        now,
    )
    preview = policy_preview(policy=policy_parse(json.dumps(KEEP_ONE)), registry_id=registry.id, now=now)
    ids = [t[0] for t in preview.impact.deleted_tags]
    assert sorted(t for _, t, _ in preview.removed_tags) == ["t2", "t3", "t4"]
    assert preview.impact.freed_bytes == deletion_impact(tag_ids=ids).freed_bytes > 0
    assert preview.tags_kept == 1


def test_a_saved_policys_totals_are_the_previews_without_its_lists(registry):
    """`policy_totals` (what a saved policy's series records) prices the same selection by the statement
    without the repositories' parts: the same figures as the preview, over two repositories with an
    image of two tags and an untagged holding."""
    now = timezone.now()
    build(
        registry,
        {
            "app": [{"image": f"i{i}", "tags": [f"t{i}"], "pushed_days_ago": i} for i in range(1, 5)],
            "web": [
                {"image": "i2", "tags": ["a", "b"], "pushed_days_ago": 3},
                {"image": "w1", "tags": ["c"], "pushed_days_ago": 5},
                {"image": "w2", "tags": [], "pushed_days_ago": 9},
            ],
        },
        now,
    )
    policy = policy_parse(json.dumps(KEEP_ONE))
    preview = policy_preview(policy=policy, registry_id=registry.id, now=now)
    totals = policy_totals(policy=policy, registry_id=registry.id, now=now)
    assert (totals.freed_bytes, totals.tags_removed, totals.manifests_freed, totals.blobs_freed) == (
        preview.impact.freed_bytes,
        preview.impact.tags,
        preview.impact.manifests_freed,
        preview.impact.blobs_freed,
    )
    assert totals.freed_bytes > 0 and totals.untagged_expired == preview.removed_untagged_count == 1
    assert totals.push_times == preview.push_times["source"] == "scans"


HARBOR_PULLS = {
    "rules": [
        {
            "template": "nDaysSinceLastPull",
            "params": {"nDaysSinceLastPull": 30},
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
            },
        }
    ]
}


def test_a_rule_on_pulls_is_refused_until_pulls_are_counted_for_its_window(registry):
    now = timezone.now()
    build(registry, {"app": [{"image": "a", "tags": ["1"], "pushed_days_ago": 90}]}, now)
    policy = policy_parse(json.dumps(HARBOR_PULLS))
    with pytest.raises(InvalidRequest, match="counts none for r: the registry sends it no events"):
        policy_preview(policy=policy, registry_id=registry.id, now=now)
    registry.pulls_counted_since = now - timedelta(days=10)
    registry.save()
    with pytest.raises(
        InvalidRequest, match="reads 30 days of pulls, and Layerlens counts the pulls of r only since"
    ):
        policy_preview(policy=policy, registry_id=registry.id, now=now)
    registry.pulls_counted_since = now - timedelta(days=40)
    registry.save()
    preview = policy_preview(policy=policy, registry_id=registry.id, now=now)
    assert [t for _, t, _ in preview.removed_tags] == ["1"] and preview.pulls["covered"] is True


def test_the_layerlens_rule_selects_what_the_whatif_flags_select(registry):
    now = timezone.now()
    build(
        registry,
        {"app": [{"image": f"i{i}", "tags": [f"1.{i}", f"x{i}"], "pushed_days_ago": i} for i in range(1, 4)]},
        now,
    )
    preview = policy_preview(
        policy=policy_parse(json.dumps({"tag_glob": "1.*", "keep_newest": 1})),
        registry_id=registry.id,
        now=now,
    )
    out = StringIO()
    call_command(
        "whatif", "--registry", registry.name, "--tag-glob", "1.*", "--keep-newest", "1", "--json", stdout=out
    )
    flags = json.loads(out.getvalue())
    assert (
        sorted(t for _, t, _ in preview.removed_tags)
        == sorted(t[2] for t in flags["deleted_tags"])
        == ["1.2", "1.3"]
    )
    assert preview.impact.freed_bytes == flags["freed_bytes"]


def test_the_command_reads_a_policy_file_and_answers_in_text_or_json(registry, tmp_path):
    now = timezone.now()
    build(
        registry,
        {"app": [{"image": f"i{i}", "tags": [f"t{i}"], "pushed_days_ago": i} for i in range(1, 4)]},
        now,
    )
    path = tmp_path / "ecr.json"
    path.write_text(json.dumps(KEEP_ONE))
    out = StringIO()
    call_command("whatif", "--registry", registry.name, "--policy", str(path), stdout=out)
    text = out.getvalue()
    assert (
        "delete app:t2" in text
        and "delete app:t3" in text
        and "ecr policy on r: tags removed 2, kept 1" in text
    )
    assert "push times from scans" in text
    # each repository's part, the 2.8 collector's figure, and who keeps the largest blobs that stay
    assert "  app: tags removed 2, manifests untagged 2, freed 2 manifests and 4 blobs" in text
    assert "garbage-collect --delete-untagged" in text and "trap_bytes 0" in text
    out = StringIO()
    call_command(
        "whatif", "--registry", registry.name, "--policy", str(path), "--format", "ecr", "--json", stdout=out
    )
    answer = json.loads(out.getvalue())
    assert (
        answer["format"] == "ecr" and len(answer["removed_tags"]) == 2 and answer["impact"]["freed_bytes"] > 0
    )
    assert [r["repository"] for r in answer["impact"]["repositories"]] == ["app"]
    assert answer["impact"]["repositories"][0]["freed_bytes"] == answer["impact"]["freed_bytes"]
    assert answer["delete_untagged"]["freed_bytes"] == answer["impact"]["freed_bytes"]


def test_the_command_refuses_in_one_line(registry, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"rules": [\n  {"rulePriority": "1"}\n]}')
    for args, message in [
        (["--policy", str(path)], "$.rules[0]"),
        (["--policy", str(tmp_path / "missing.json")], "No such file or directory"),
        (["--policy", str(path), "--tag-glob", "x"], "--tag-glob cannot be combined with it"),
        (["--format", "ecr"], "--format describes a --policy file"),
    ]:
        with pytest.raises(CommandError) as raised:
            call_command("whatif", "--registry", registry.name, *args)
        assert message in str(raised.value) and "\n" not in str(raised.value)
