"""Images pushed at the same instant are ranked newest first by (push time, digest), tags by (push time,
name), strings compared as Python compares them; and a tag's push event counts in GitLab's ranking."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import Registry, RegistryEvent
from analytics.policies import rows
from analytics.policies.preview import policy_parse, policy_preview
from tests.policies.support import build

pytestmark = pytest.mark.django_db

HARBOR_LATEST_2 = {
    "rules": [
        {
            "template": "latestPushedK",
            "params": {"latestPushedK": 2},
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
            },
        }
    ]
}
HARBOR_PULLED_1 = {
    "rules": [
        {
            "template": "latestPulledN",
            "params": {"latestPulledN": 1},
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "**"}]
            },
        }
    ]
}
ECR_KEEP_2 = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 2},
            "action": {"type": "expire"},
        }
    ]
}
GITLAB_KEEP_1 = {"name_regex": ".*", "keep_n": 1}


@pytest.fixture
def registry():
    return Registry.objects.create(name="ties", url="http://127.0.0.1:5997")


def _removed_images(preview, names: dict[str, str]) -> set[str]:
    return {names[d] for _, _, d in preview.removed_tags} | {names[d] for _, d in preview.removed_untagged}


@pytest.mark.parametrize("doc", [HARBOR_LATEST_2, ECR_KEEP_2], ids=["harbor", "ecr"])
def test_images_pushed_at_one_instant_are_kept_by_the_greatest_digests(registry, doc):
    now = timezone.now()
    images = [{"image": f"i{n}", "tags": [f"t{n}"], "pushed_days_ago": 3} for n in range(5)]
    images.append({"image": "newest", "tags": ["new"], "pushed_days_ago": 1})
    names = build(registry, {"app": images}, now)
    tied = sorted((d for d, n in names.items() if n != "newest"), reverse=True)

    preview = policy_preview(policy=policy_parse(json.dumps(doc)), registry_id=registry.id, now=now)

    # the newest, then the greatest digest of the tied ones, stay
    assert _removed_images(preview, names) == {names[d] for d in tied[1:]}


def test_images_never_pulled_rank_as_pulled_at_the_epoch_then_by_digest(registry):
    now = timezone.now()
    registry.pulls_counted_since = now - timedelta(days=30)
    registry.save(update_fields=["pulls_counted_since"])
    images = [{"image": f"i{n}", "tags": [f"t{n}"], "pushed_days_ago": n + 1} for n in range(4)]
    names = build(registry, {"app": images}, now)
    greatest = max(names)

    preview = policy_preview(
        policy=policy_parse(json.dumps(HARBOR_PULLED_1)), registry_id=registry.id, now=now
    )

    assert _removed_images(preview, names) == {n for d, n in names.items() if d != greatest}


def test_gitlab_tags_pushed_at_one_instant_are_kept_by_the_greatest_names(registry):
    now = timezone.now()
    images = [{"image": f"i{n}", "tags": [f"t{n}"], "pushed_days_ago": 3} for n in range(5)]
    build(registry, {"app": images}, now)

    preview = policy_preview(policy=policy_parse(json.dumps(GITLAB_KEEP_1)), registry_id=registry.id, now=now)

    assert sorted(t for _, t, _ in preview.removed_tags) == ["t0", "t1", "t2", "t3"]


def test_gitlab_reads_a_tags_push_event_when_it_is_earlier_than_the_scan(registry):
    now = timezone.now()
    images = [{"image": f"i{n}", "tags": [f"t{n}"], "pushed_days_ago": 5 - n} for n in range(3)]
    names = build(registry, {"app": images}, now)
    newest = next(d for d, n in names.items() if n == "i2")
    policy = policy_parse(json.dumps(GITLAB_KEEP_1))
    by_scans = policy_preview(policy=policy, registry_id=registry.id, now=now)
    assert sorted(t for _, t, _ in by_scans.removed_tags) == ["t0", "t1"]
    # the registry says t2 (scanned newest) was pushed long before the others
    RegistryEvent.objects.create(
        registry=registry, source="distribution", key="p-t2", action="push", repository="app", tag="t2",
        digest=newest, occurred_at=now - timedelta(days=30),
    )  # fmt: skip

    preview = policy_preview(policy=policy, registry_id=registry.id, now=now)

    assert sorted(t for _, t, _ in preview.removed_tags) == ["t0", "t2"]
    assert (preview.push_times["events"], preview.push_times["scans"]) == (1, 2)
    assert preview.tags_kept == 1


@pytest.mark.parametrize("probed", [10_000, 0], ids=["probed", "hashed"])
@pytest.mark.parametrize("doc", [HARBOR_LATEST_2, ECR_KEEP_2], ids=["harbor", "ecr"])
def test_an_expired_image_loses_every_tag_however_many_it_has(registry, doc, probed, monkeypatch):
    # an image's least and greatest tag ids come with its group; those between them are read again,
    # by their manifest or by one pass over the tags
    monkeypatch.setattr(rows, "IMAGES_ANSWER", rows.images_answer(probed))
    now = timezone.now()
    images = [
        {"image": "four", "tags": ["a1", "a2", "a3", "a4"], "pushed_days_ago": 9},
        {"image": "three", "tags": ["b1", "b2", "b3"], "pushed_days_ago": 8},
        {"image": "two", "tags": ["c1", "c2"], "pushed_days_ago": 7},
        {"image": "one", "tags": ["d1"], "pushed_days_ago": 6},
        {"image": "kept", "tags": ["e1", "e2", "e3"], "pushed_days_ago": 2},
        {"image": "newest", "tags": ["f1"], "pushed_days_ago": 1},
    ]
    build(registry, {"app": images}, now)

    preview = policy_preview(policy=policy_parse(json.dumps(doc)), registry_id=registry.id, now=now)

    assert sorted(t for _, t, _ in preview.removed_tags) == [
        "a1", "a2", "a3", "a4", "b1", "b2", "b3", "c1", "c2", "d1",
    ]  # fmt: skip
