"""Cold images on a real registry: images pushed over the registry API, scanned, pulls stored as the
receiver stores them and counted; the cold answer (API, CSV, what-if rule, command) checked against the
pushed content, then the cold tags deleted through the registry API and the registry's own
`garbage-collect` run: what it removes from the blob store is the answer's freed bytes."""

from __future__ import annotations

import csv
import io
import subprocess
from datetime import timedelta
from io import StringIO
from itertools import count

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from analytics.events.pulls import pulls_record
from analytics.models import Registry, RegistryEvent, RepositoryManifest
from analytics.scans.start import scan_start_inline
from harness.pusher import (
    PushedImage,
    Pusher,
    make_base,
)
from harness.registry import RegistryServer, blobstore_bytes
from harness.tools import require_tool

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

_keys = count()


@pytest.fixture
def scratch():
    server = RegistryServer().start()
    yield server
    server.cleanup()


def size_bytes(image: PushedImage) -> int:
    """An image's parts as the registry stores them: manifest, config, distinct layers."""
    return len(image.manifest) + len(image.config) + sum(dict(image.layers).values())


def pull(registry: Registry, repository: str, digest: str, *, ago: timedelta, tag: str = "", agent: str = ""):
    """A pull as the receiver stores a distribution notification of it, then counted."""
    event = RegistryEvent.objects.create(
        registry=registry,
        source=RegistryEvent.Source.DISTRIBUTION,
        key=f"cold-{next(_keys)}",
        action=RegistryEvent.Action.PULL,
        repository=repository,
        tag=tag,
        digest=digest,
        media_type="application/vnd.oci.image.manifest.v1+json",
        user_agent=agent or "containerd/1.7.24",
        occurred_at=timezone.now() - ago,
    )
    pulls_record(registry_id=registry.id, events=[event])


def test_cold_bytes_are_what_the_registry_garbage_collector_frees(scratch):
    os_base = make_base("os", layers=2, size=6000)
    with Pusher(scratch.url) as push:
        old = push.image("apps/web", "old", seed="web-old", base=os_base)
        push.put_manifest("apps/web", "old-alias", old.manifest)  # a second tag on a cold digest
        stale = push.image("apps/web", "stale", seed="web-stale", base=os_base)
        new = push.image("apps/web", "new", seed="web-new", base=os_base)
        # stale's very manifest in another repository, pulled there: kept by it
        copy = push.image("apps/api", "1", seed="web-stale", base=os_base)
        cli = push.image("tools/cli", "1", seed="cli", base=make_base("cli-base", layers=1, size=3000))
        warm_index, _, warm_children = push.multi_platform("apps/multi", "1", seed="multi-1", base=os_base)
        cold_index, cold_raw, cold_children = push.multi_platform(
            "apps/multi", "2", seed="multi-2", base=os_base
        )
    assert copy.digest == stale.digest
    scan_start_inline(target=scratch.url)
    registry = Registry.objects.get(url=scratch.url)

    day = timedelta(days=1)
    pull(registry, "apps/web", stale.digest, ago=40 * day, tag="stale")  # before the window
    for hours in (1, 2, 3):
        pull(registry, "apps/web", new.digest, ago=timedelta(hours=hours), tag="new")
    pull(registry, "apps/api", copy.digest, ago=day, tag="1")
    pull(registry, "apps/multi", warm_index, ago=2 * day, tag="1")  # the index: both children warm
    pull(registry, "apps/web", old.digest, ago=timedelta(0), agent="layerlens/0.1")  # the scanner's read

    client = APIClient()
    reader = get_user_model().objects.create_user("reader")
    client.force_authenticate(reader)
    client.force_login(reader)  # the pages read the session
    answer = client.get("/api/v1/cold/", {"registry": scratch.host, "days": 30}).json()

    cold_images = {("apps/web", old.digest), ("apps/web", stale.digest), ("tools/cli", cli.digest)}
    cold_images |= {("apps/multi", c.digest) for c in cold_children}
    assert {(r["repository"], r["digest"]) for r in answer["results"]} == cold_images
    assert answer["next"] is None
    by_digest = {r["digest"]: r for r in answer["results"]}
    assert by_digest[old.digest]["pulls"] == 0 and by_digest[old.digest]["last_pulled_at"] is None
    assert by_digest[stale.digest]["pulls"] == 1 and by_digest[stale.digest]["last_pulled_at"]
    # pulls counted since the oldest event (40 days): a 30-day window is covered, a 60-day one is not
    assert answer["pulls"]["covered"] is True
    assert answer["pulls"]["registries"][0]["counted_since"]
    longer = client.get("/api/v1/cold/", {"registry": scratch.host, "days": 60, "totals": "false"}).json()
    assert longer["pulls"]["covered"] is False and longer["totals"] is None

    pushed = [old, stale, cli, *cold_children]
    totals = answer["totals"]
    assert totals["images"] == len(pushed)
    assert totals["logical_bytes"] == sum(size_bytes(i) for i in pushed)
    assert totals["tags"] == 5  # old, old-alias, stale, apps/multi:2, tools/cli:1

    # a page at a time, and the whole list as CSV, are the same rows
    walked, url = [], "/api/v1/cold/?" + f"registry={scratch.host}&days=30&page_size=2&totals=false"
    while url:
        page = client.get(url).json()
        walked += [(r["repository"], r["digest"]) for r in page["results"]]
        url = page["next"]
    assert sorted(walked) == sorted(cold_images) and len(walked) == len(cold_images)
    reply = client.get("/api/v1/cold/", {"registry": scratch.host, "days": 30, "format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(reply.streaming_content).decode())))
    assert {(r["repository"], r["digest"]) for r in rows} == cold_images

    # the what-if rule selects the same tags and frees the same bytes
    whatif = client.get("/api/v1/whatif/", {"registry": scratch.host, "not_pulled_days": 30}).json()
    assert sorted(f"{t[1]}:{t[2]}" for t in whatif["deleted_tags"]) == [
        "apps/multi:2",
        "apps/web:old",
        "apps/web:old-alias",
        "apps/web:stale",
        "tools/cli:1",
    ]
    assert whatif["freed_bytes"] == totals["freed_bytes"] > 0
    assert whatif["pulls"]["covered"] is True
    out = StringIO()
    call_command("whatif", "--registry", scratch.host, "--not-pulled-days", "30", stdout=out)
    assert f"freed_bytes {totals['freed_bytes']}" in out.getvalue()

    # the images API and page show each image's own pulls
    new_id = RepositoryManifest.objects.get(repository__name="apps/web", manifest__digest=new.digest).id
    image = client.get(f"/api/v1/images/{new_id}/").json()
    assert image["pulls"] == 3 and image["last_pulled_at"]
    listed = client.get("/api/v1/images/", {"registry": scratch.host, "repository": "apps/web"}).json()
    assert {r["digest"]: r["pulls"] for r in listed["results"]} == {
        old.digest: 0,
        stale.digest: 1,
        new.digest: 3,
    }
    page = client.get(f"/ui/images/{new_id}/")
    assert page.status_code == 200 and "Pulled 3 times from apps/web" in " ".join(
        page.content.decode().split()
    )

    # Delete the cold content through the registry API, by digest as distribution deletes (every tag
    # naming it goes), and collect garbage. The cold index's children are deleted too, rather than left
    # to `--delete-untagged`: distribution 2.8 (Debian's) skips an untagged child of a *tagged* index
    # when marking, so that flag would also remove the configs and layers of the warm index's children
    # (fixed upstream in 3.0); the plain collector keeps what any remaining manifest references.
    before = blobstore_bytes(scratch.root)
    assert {(t[1], t[3]) for t in whatif["deleted_tags"]} == {
        ("apps/web", old.digest),
        ("apps/web", stale.digest),
        ("apps/multi", cold_index),
        ("tools/cli", cli.digest),
    }
    doomed = [
        ("apps/web", old.digest),
        ("apps/web", stale.digest),
        ("tools/cli", cli.digest),
        ("apps/multi", cold_index),
        *(("apps/multi", c.digest) for c in cold_children),
    ]
    with httpx.Client(base_url=scratch.url, timeout=10) as http:
        for repository, digest in doomed:
            assert http.delete(f"/v2/{repository}/manifests/{digest}").status_code == 202
    scratch.stop()  # garbage-collect needs the registry stopped
    gc = require_tool("docker-registry")
    config = scratch.workdir / "config.yml"
    subprocess.run([gc, "garbage-collect", str(config)], check=True, capture_output=True)
    assert before - blobstore_bytes(scratch.root) == totals["freed_bytes"]
    # what stays of the cold content: the base layers warm images use, and stale's manifest and blobs
    # (apps/api keeps them)
    assert totals["kept_bytes"] == sum(dict(stale.layers).values()) + len(stale.config) + len(stale.manifest)
    assert len(cold_raw) + sum(len(c.manifest) for c in cold_children) < totals["freed_bytes"]
    assert warm_children
