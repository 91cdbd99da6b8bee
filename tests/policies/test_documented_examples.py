"""Each documented example of each format (tests/fixtures/policies/, each with where it came from) gives
the documented selection when previewed over the same repository as Layerlens's rows."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

import pytest
from django.utils import timezone

from analytics.models import Registry
from analytics.policies.preview import policy_parse, policy_preview
from tests.policies.support import FIXTURES, build, fixture

pytestmark = pytest.mark.django_db

EXAMPLES = sorted(p.stem for p in FIXTURES.glob("*.json"))


def test_every_format_has_documented_examples():
    assert {name.split("_")[0] for name in EXAMPLES} == {"ecr", "gitlab", "harbor"}


@pytest.mark.parametrize("name", EXAMPLES)
def test_documented_example_gives_the_documented_selection(name):
    example = fixture(name)
    now = timezone.now()
    registry = Registry.objects.create(name="docs", url="http://127.0.0.1:5999")
    if "pulls_counted_days_ago" in example:
        registry.pulls_counted_since = now - timedelta(days=example["pulls_counted_days_ago"])
        registry.save(update_fields=["pulls_counted_since"])
    names = build(registry, example["repositories"], now)

    policy = policy_parse(json.dumps(example["policy"]))  # the format guessed from the fields
    assert policy.format == example["format"]
    preview = policy_preview(
        policy=policy, registry_id=registry.id, namespace=example.get("namespace"), now=now
    )

    tags_removed: dict[tuple[str, str], set[str]] = defaultdict(set)
    for repository, tag, digest in preview.removed_tags:
        tags_removed[(repository, names[digest])].add(tag)
    removed: dict[str, set[str]] = defaultdict(set)
    for repository, image in tags_removed:
        removed[repository].add(image)
    for repository, digest in preview.removed_untagged:
        removed[repository].add(names[digest])
    # an image goes with all its tags, never some of them
    for repo_name, entries in example["repositories"].items():
        for entry in entries:
            if entry.get("count", 1) == 1 and (repo_name, entry["image"]) in tags_removed:
                assert tags_removed[(repo_name, entry["image"])] == set(entry["tags"])
    if "removed" in example:
        assert {r: sorted(i) for r, i in removed.items()} == {
            r: sorted(i) for r, i in example["removed"].items() if i
        }
    for repository, kept in example.get("kept_count", {}).items():
        total = sum(e.get("count", 1) for e in example["repositories"][repository])
        assert total - len(removed[repository]) == kept, repository
    # scans gave every push time here (no push events)
    assert preview.push_times is None or preview.push_times["events"] == 0
