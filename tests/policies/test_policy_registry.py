"""A policy of each format applied to a real registry: images and a multi-platform index pushed over the
registry API, scanned, their pushes stored as the events receiver stores them; the preview's tags are
deleted through the registry API (by digest, as registries delete images) and the registry's own
`garbage-collect` run: the blob store loses exactly the preview's freed_bytes, each repository's part is
what vanished from the disk of that repository's removed images alone (and the shared line what several
lost), the largest blobs that stay are still on disk and held by the images named, and the tags left are
the ones the policy keeps. Then `garbage-collect --delete-untagged` on the same storage: distribution 2.8
also takes the kept index's untagged children's configs and layers (2.8 marks an index's direct
references only), and the blob store has then lost exactly the preview's delete_untagged.freed_bytes."""

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
from analytics.selectors import whatif_columns
from analytics.selectors.columns import registry_columns
from harness.pusher import OCI_INDEX, Pusher, make_base
from harness.registry import RegistryServer, blobstore_digests
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
    # 1.x past the newest per repository, then anything past 35 days (tools/cli and tools/lint share a layer)
    "ecr": (
        ECR,
        {
            ("apps/web", "1.0"),
            ("apps/web", "1.1"),
            ("apps/web", "dev-a"),
            ("tools/cli", "1"),
            ("tools/lint", "1"),
        },
    ),
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


@pytest.mark.parametrize("judged", ["by the statement", "over the columns"])
@pytest.mark.parametrize("fmt", sorted(CASES))
def test_policy_deletions_free_what_the_registry_garbage_collector_frees(
    scratch, fmt, judged, settings, tmp_path, monkeypatch, django_capture_on_commit_callbacks
):
    policy_doc, expected = CASES[fmt]
    if judged == "over the columns":  # every selection judged over the columns, which the scan's end keeps
        settings.WHATIF_COLUMNS_TAGS, settings.WHATIF_COLUMNS_DIR = 1, tmp_path
    os_base = make_base("os", layers=2, size=6000)
    cli_base = make_base("cli", layers=1, size=3000)
    with Pusher(scratch.url) as push:
        pushed = {
            ("apps/web", "1.0"): (push.image("apps/web", "1.0", seed="web-10", base=os_base), 30),
            ("apps/web", "1.1"): (push.image("apps/web", "1.1", seed="web-11", base=os_base), 20),
            ("apps/web", "1.2"): (push.image("apps/web", "1.2", seed="web-12", base=os_base), 1),
            ("apps/web", "dev-a"): (push.image("apps/web", "dev-a", seed="web-dev", base=os_base), 40),
            # web:1.1's very manifest in another repository: kept there whatever apps/web loses
            ("apps/api", "1.0"): (push.image("apps/api", "1.0", seed="web-11", base=os_base), 1),
            ("tools/cli", "1"): (push.image("tools/cli", "1", seed="cli", base=cli_base), 50),
            # the same base in another repository: removed by ECR with tools/cli, a shared freed layer
            ("tools/lint", "1"): (push.image("tools/lint", "1", seed="lint", base=cli_base), 45),
        }
        twelve = pushed[("apps/web", "1.2")][0]
        push.put_manifest("apps/web", "latest", twelve.manifest)
        pushed[("apps/web", "latest")] = (twelve, 1)
        # a multi-platform index every policy keeps: its children untagged, their layers their own
        index_digest, _, children = push.multi_platform("apps/multi", "1", seed="multi", base=os_base)
    with django_capture_on_commit_callbacks(execute=True):  # what runs once the scan has committed
        scan_start_inline(target=scratch.url)
    registry = Registry.objects.get(url=scratch.url)
    assert (registry_columns(registry_id=registry.id, read=False) is not None) == (
        judged == "over the columns"
    )
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
    RegistryEvent.objects.create(
        registry=registry, source=RegistryEvent.Source.DISTRIBUTION, key=f"push-{next(_keys)}",
        action=RegistryEvent.Action.PUSH, repository="apps/multi", tag="1", digest=index_digest,
        media_type=OCI_INDEX, occurred_at=now - timedelta(days=1),
    )  # fmt: skip

    judgements = []
    if judged == "over the columns":
        judge = whatif_columns.whatif_rows
        monkeypatch.setattr(
            whatif_columns, "whatif_rows", lambda *a, **k: judgements.append(1) or judge(*a, **k)
        )
    preview = policy_preview(policy=policy_parse(json.dumps(policy_doc)), registry_id=registry.id, now=now)
    assert len(judgements) == (judged == "over the columns")
    assert {(r, t) for r, t, _ in preview.removed_tags} == expected
    assert preview.push_times["source"] == "events" and preview.push_times["scans"] == 0
    assert preview.removed_untagged == [] and preview.tags_kept == len(pushed) + 1 - len(expected)

    before = blobstore_digests(scratch.root)
    with httpx.Client(base_url=scratch.url, timeout=10) as http:
        for repository, digest in sorted({(r, d) for r, _, d in preview.removed_tags}):
            assert http.delete(f"/v2/{repository}/manifests/{digest}").status_code == 202
        # the tags the policy keeps are the tags the registry still lists
        left = set()
        for repository in ("apps/web", "apps/api", "apps/multi", "tools/cli", "tools/lint"):
            reply = http.get(f"/v2/{repository}/tags/list").json()
            left |= {(repository, t) for t in reply.get("tags") or []}
    assert left == set(pushed) - expected | {("apps/multi", "1")}
    scratch.stop()  # garbage-collect needs the registry stopped
    config = scratch.workdir / "config.yml"
    gc = require_tool("docker-registry")
    # the plain collector: every manifest a repository still lists is kept, so after deleting by digest it
    # frees what the policy's deletions free
    subprocess.run([gc, "garbage-collect", str(config)], check=True, capture_output=True)
    after = blobstore_digests(scratch.root)
    assert sum(before.values()) - sum(after.values()) == preview.impact.freed_bytes > 0

    # each vanished digest belongs to the removed images that referenced it: one repository's, or shared
    removed = {}
    for (repository, tag), (image, _) in pushed.items():
        if (repository, tag) in expected:
            removed.setdefault(repository, set()).update({image.digest, *image.blobs})
    by_repository, shared = {}, 0
    for digest in set(before) - set(after):
        owners = [r for r, digests in removed.items() if digest in digests]
        assert owners, digest  # nothing vanished that no removed image referenced
        if len(owners) == 1:
            by_repository[owners[0]] = by_repository.get(owners[0], 0) + before[digest]
        else:
            shared += before[digest]
    answered = {r.repository: r.freed_bytes for r in preview.impact.repositories if r.freed_bytes}
    assert answered == by_repository
    assert preview.impact.shared_freed.freed_bytes == shared
    assert sum(r.freed_bytes for r in preview.impact.repositories) + shared == preview.impact.freed_bytes
    assert {r.repository: r.tags for r in preview.impact.repositories} == {
        r: sum(1 for rr, _ in expected if rr == r) for r in removed
    }
    if fmt == "ecr":
        assert shared == 3000  # the cli base layer, held by tools/cli and tools/lint, both removed

    # the largest blobs that stay are on disk still, held by the images named, largest first
    assert preview.impact.kept_largest
    sizes = [k.size for k in preview.impact.kept_largest]
    assert sizes == sorted(sizes, reverse=True)
    kept_images = {(r, i.digest): i for (r, t), (i, _) in pushed.items() if (r, t) not in expected}
    for kept in preview.impact.kept_largest:
        assert after[kept.digest] == kept.size
        assert kept.holders and len(kept.holders) <= kept.kept_by
        for holder in kept.holders:
            image = kept_images.get((holder.repository, holder.digest))
            if image is None:  # an index's child: held through the index, no tag of its own
                assert holder.repository == "apps/multi" and not holder.tags
                assert holder.digest in {c.digest for c in children}
                continue
            assert kept.digest in image.blobs and holder.tags

    # distribution 2.8's --delete-untagged on the same storage: the kept index's children lose their
    # configs and layers as well (not their manifests: the index references them)
    subprocess.run([gc, "garbage-collect", "--delete-untagged", str(config)], check=True, capture_output=True)
    trapped = blobstore_digests(scratch.root)
    own = {d for c in children for d in (c.config_digest, c.layers[-1][0])}
    assert set(after) - set(trapped) == own
    assert sum(before.values()) - sum(trapped.values()) == preview.delete_untagged["freed_bytes"]
    assert preview.delete_untagged["trap_bytes"] == sum(after[d] for d in own) > 0
    assert preview.delete_untagged["indexes_kept"] == 1
    assert any("fixed in 3.0" in n and "--delete-untagged" in n for n in preview.notes)
