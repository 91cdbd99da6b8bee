"""A policy of each format applied to a real registry: images pushed over the registry API, scanned,
their pushes stored as the events receiver stores them; the preview's tags are deleted through the
registry API (by digest, as registries delete images) and the registry's own `garbage-collect` run: the
blob store loses exactly the preview's freed_bytes, and the tags left are the ones the policy keeps.
No multi-platform index here: distribution 2.8's `--delete-untagged` would also take the untagged
children of a tagged index, which no policy asked for."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from itertools import count

import httpx
import pytest
from django.utils import timezone

from analytics.models import Registry, RegistryEvent
from analytics.policies.preview import policy_parse, policy_preview
from analytics.scans.start import scan_start_inline
from harness.pusher import Pusher, make_base
from harness.registry import RegistryServer, blobstore_bytes
from harness.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
_keys = count()

ECR = {
    "rules": [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "tagged",
                "tagPrefixList": ["1."],
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        },
        {
            "rulePriority": 2,
            "selection": {
                "tagStatus": "any",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 35,
            },
            "action": {"type": "expire"},
        },
    ]
}
GITLAB = {
    "container_expiration_policy_attributes": {
        "name_regex": ".*",
        "keep_n": 1,
        "older_than": "7d",
        "name_regex_keep": "dev-.*",
    }
}
HARBOR = {
    "algorithm": "or",
    "rules": [
        {
            "action": "retain",
            "template": "latestPushedK",
            "params": {"latestPushedK": 2},
            "tag_selectors": [{"kind": "doublestar", "decoration": "matches", "pattern": "**"}],
            "scope_selectors": {
                "repository": [{"kind": "doublestar", "decoration": "repoMatches", "pattern": "apps/**"}]
            },
        }
    ],
}
CASES = {
    # 1.x past the newest per repository, then anything past 35 days
    "ecr": (ECR, {("apps/web", "1.0"), ("apps/web", "1.1"), ("apps/web", "dev-a"), ("tools/cli", "1")}),
    # per repository: not latest, not dev-*, past the newest one, older than 7 days
    "gitlab": (GITLAB, {("apps/web", "1.0"), ("apps/web", "1.1")}),
    # apps/*: the 2 most recently pushed artifacts kept; tools/cli taken by no rule, untouched
    "harbor": (HARBOR, {("apps/web", "1.0"), ("apps/web", "dev-a")}),
}


@pytest.fixture
def scratch():
    server = RegistryServer().start()
    yield server
    server.cleanup()


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_policy_deletions_free_what_the_registry_garbage_collector_frees(scratch, fmt):
    policy_doc, expected = CASES[fmt]
    os_base = make_base("os", layers=2, size=6000)
    with Pusher(scratch.url) as push:
        pushed = {
            ("apps/web", "1.0"): (push.image("apps/web", "1.0", seed="web-10", base=os_base), 30),
            ("apps/web", "1.1"): (push.image("apps/web", "1.1", seed="web-11", base=os_base), 20),
            ("apps/web", "1.2"): (push.image("apps/web", "1.2", seed="web-12", base=os_base), 1),
            ("apps/web", "dev-a"): (push.image("apps/web", "dev-a", seed="web-dev", base=os_base), 40),
            # web:1.1's very manifest in another repository: kept there whatever apps/web loses
            ("apps/api", "1.0"): (push.image("apps/api", "1.0", seed="web-11", base=os_base), 1),
            ("tools/cli", "1"): (
                push.image("tools/cli", "1", seed="cli", base=make_base("cli", layers=1, size=3000)),
                50,
            ),
        }
        twelve = pushed[("apps/web", "1.2")][0]
        push.put_manifest("apps/web", "latest", twelve.manifest)
        pushed[("apps/web", "latest")] = (twelve, 1)
    scan_start_inline(target=scratch.url)
    registry = Registry.objects.get(url=scratch.url)
    now = timezone.now()
    for (repository, tag), (
        image,
        days,
    ) in pushed.items():  # as the receiver stores distribution's push events
        RegistryEvent.objects.create(
            registry=registry, source=RegistryEvent.Source.DISTRIBUTION, key=f"push-{next(_keys)}",
            action=RegistryEvent.Action.PUSH, repository=repository, tag=tag, digest=image.digest,
            media_type="application/vnd.oci.image.manifest.v1+json", occurred_at=now - timedelta(days=days),
        )  # fmt: skip

    preview = policy_preview(policy=policy_parse(json.dumps(policy_doc)), registry_id=registry.id, now=now)
    assert {(r, t) for r, t, _ in preview.removed_tags} == expected
    assert preview.push_times["source"] == "events" and preview.push_times["scans"] == 0
    assert preview.removed_untagged == [] and preview.tags_kept == len(pushed) - len(expected)

    before = blobstore_bytes(scratch.root)
    with httpx.Client(base_url=scratch.url, timeout=10) as http:
        for repository, digest in sorted({(r, d) for r, _, d in preview.removed_tags}):
            assert http.delete(f"/v2/{repository}/manifests/{digest}").status_code == 202
        # the tags the policy keeps are the tags the registry still lists
        left = set()
        for repository in ("apps/web", "apps/api", "tools/cli"):
            reply = http.get(f"/v2/{repository}/tags/list").json()
            left |= {(repository, t) for t in reply.get("tags") or []}
    assert left == set(pushed) - expected
    scratch.stop()  # garbage-collect needs the registry stopped
    config = scratch.workdir / "config.yml"
    gc = require_tool("docker-registry")
    subprocess.run([gc, "garbage-collect", "--delete-untagged", str(config)], check=True, capture_output=True)
    assert before - blobstore_bytes(scratch.root) == preview.impact.freed_bytes > 0
