"""Saved cleanup policies evaluated by a real Celery worker: as soon as one is saved, after a registry
scan it ran, and after the events of a followed registry it applied. The point it records is what the
what-if frees for the same policy, and what the registry's own `garbage-collect` removes from its blob
store once the policy's tags are deleted through the registry API; a scan that changed nothing adds no
point."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import pytest

from analytics.models import PolicyEvaluation, Registry, Scan
from analytics.policies.preview import policy_parse, policy_preview
from analytics.policies.saved import cleanup_policy_create
from analytics.registries import registry_upsert
from analytics.scans.start import scan_start
from harness.pusher import Pusher, make_base
from harness.registry import RegistryServer, blobstore_bytes
from harness.tools import require_tool
from tests.events.test_follow_registry import settled, wait_until

pytestmark = [pytest.mark.integration]

# Per repository, the 1.x images past the newest one expire (ECR's documented rule shape).
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
        }
    ]
}


def _finished(scan_id: int) -> bool:
    return Scan.objects.get(id=scan_id).is_finished


def test_a_scan_by_the_worker_records_the_point_the_registry_garbage_collector_confirms(
    start_worker, transactional_db
):
    server = RegistryServer().start()
    try:
        os_base = make_base("os", layers=2, size=6000)
        with Pusher(server.url) as push:
            for tag, seed in (("1.0", "web-10"), ("1.1", "web-11"), ("1.2", "web-12")):
                push.image("apps/web", tag, seed=seed, base=os_base)
            push.image("apps/api", "1.0", seed="web-11", base=os_base)  # web:1.1's manifest, kept here
            push.image("tools/cli", "1", seed="cli", base=make_base("cli", layers=1, size=3000))
        registry = registry_upsert(url=server.url, name="scratch")
        start_worker()
        # saved: its first point at once, over nothing recorded yet
        policy = cleanup_policy_create(registry=registry, name="old 1.x", text=json.dumps(ECR))
        points = PolicyEvaluation.objects.filter(policy=policy)
        wait_until(lambda: points.count() == 1, what="the point of the policy just saved")
        first = points.get()
        assert (first.freed_bytes, first.tags_removed, first.error) == (0, 0, "")

        scan = scan_start(target=server.url)
        wait_until(lambda: points.count() == 2, what="the point after the scan", timeout=120)
        assert Scan.objects.get(id=scan.id).status == Scan.Status.SUCCEEDED
        point = points.latest("at")
        assert point.error == "" and point.push_times == "scans"

        # the what-if of the same policy, computed here
        preview = policy_preview(policy=policy_parse(json.dumps(ECR)), registry_id=registry.id)
        assert point.freed_bytes == preview.impact.freed_bytes > 0
        assert point.tags_removed == len(preview.removed_tags) == 2
        assert {r for r, _, _ in preview.removed_tags} == {"apps/web"}

        # a scan that changes nothing: no second point for the same content version
        again = scan_start(target=server.url)
        wait_until(lambda: _finished(again.id), what="the second scan", timeout=120)
        time.sleep(2)  # the evaluation runs once the scan has committed
        assert points.count() == 2

        # the registry's own collector removes what the point says
        before = blobstore_bytes(server.root)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for repository, digest in sorted({(r, d) for r, _, d in preview.removed_tags}):
                assert http.delete(f"/v2/{repository}/manifests/{digest}").status_code == 202
        server.stop()
        gc = require_tool("docker-registry")
        config = server.workdir / "config.yml"
        subprocess.run(
            [gc, "garbage-collect", "--delete-untagged", str(config)], check=True, capture_output=True
        )
        assert before - blobstore_bytes(server.root) == point.freed_bytes
    finally:
        server.cleanup()


def test_applied_events_append_a_point_per_content_version(followed, start_worker):
    start_worker()
    policy = cleanup_policy_create(registry=followed.row, name="every tag", text='{"tag_glob": "*"}')
    points = PolicyEvaluation.objects.filter(policy=policy)
    wait_until(lambda: points.count() == 1, what="the point of the policy just saved")
    base = make_base("os", layers=1, size=4000)
    with Pusher(followed.url) as push:
        first = push.image("apps/web", "1.0", seed="one", base=base)
    settled(followed, {("apps/web", "1.0"): first.digest})
    wait_until(lambda: points.count() == 2, what="the point after the first push")

    with Pusher(followed.url) as push:
        second = push.image("apps/web", "2.0", seed="two", base=base)
    settled(followed, {("apps/web", "1.0"): first.digest, ("apps/web", "2.0"): second.digest})
    wait_until(lambda: points.count() == 3, what="the point after the second push")

    zero, one, two = points.order_by("at")
    assert zero.freed_bytes == 0 and zero.content_version < one.content_version
    assert one.error == two.error == "" and one.content_version < two.content_version
    registry = Registry.objects.get(id=followed.row.id)
    preview = policy_preview(policy=policy_parse('{"tag_glob": "*"}'), registry_id=registry.id)
    assert two.freed_bytes == preview.impact.freed_bytes and two.tags_removed == 2
    # deleting every tag frees everything the registry holds: what it stores, by its blob store
    assert two.freed_bytes == followed.server.blobstore_bytes() > one.freed_bytes > 0
