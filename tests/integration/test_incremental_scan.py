"""Fast scans of a real CNCF registry: incremental rescans and content already known by digest.

Requests are counted in the client (an httpx request hook on the client the services build), since the
registry has no request counter; figures are compared with the blob store on disk and with what the
test itself pushed (harness/pusher.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from analytics.models import HistoryEntry, Manifest, Registry, Scan, Tag, TagEvent
from analytics.scans import clients
from analytics.scans.clients import registry_client
from analytics.scans.start import scan_create, scan_request_resolve, scan_run_inline
from analytics.selectors.scope import Scope
from analytics.selectors.summary import dedup_summary
from harness.pusher import Pusher, make_base
from harness.registry import RegistryServer, blobstore_bytes
from tests.support.slow_proxy import SlowProxy

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def registry() -> Iterator[RegistryServer]:
    with RegistryServer() as reg:
        yield reg


@pytest.fixture
def requests_seen(monkeypatch) -> list[tuple[str, str]]:
    """(method, path) of every request the scan services send to a registry, in order."""
    seen: list[tuple[str, str]] = []
    build = registry_client

    def counting(registry):
        client = build(registry)
        client._http.event_hooks["request"].append(lambda r: seen.append((r.method, r.url.path)))
        return client

    monkeypatch.setattr(clients, "registry_client", counting)
    return seen


def scan_repository(url: str, repository: str) -> Scan:
    request = scan_request_resolve(target=f"{url.split('://', 1)[1]}/{repository}")
    scan = scan_create(registry=request.registry, repository=request.repository)
    return scan_run_inline(scan_id=scan.id)


def stored_bytes(url: str) -> int:
    return dedup_summary(scope=Scope(registry_id=Registry.objects.get(url=url).id)).stored_bytes


def skopeo(*args: str) -> dict:
    out = subprocess.run(
        ["skopeo", "inspect", "--tls-verify=false", *args], capture_output=True, check=True, timeout=60
    )
    return json.loads(out.stdout)


def test_rescan_of_unchanged_repository_sends_tag_list_and_one_head_per_tag(registry, requests_seen):
    base = make_base("os")
    with Pusher(registry.url) as push:
        for tag in ("v1", "v2", "v3"):
            push.image("team/app", tag, seed=f"app-{tag}", base=base)
    first = scan_repository(registry.url, "team/app")
    assert first.status == Scan.Status.SUCCEEDED
    assert stored_bytes(registry.url) == blobstore_bytes(registry.root)
    gets = [p for m, p in requests_seen if m == "GET"]
    assert sum("/manifests/" in p for p in gets) == 3 and sum("/blobs/" in p for p in gets) == 3
    last_seen = dict(Tag.objects.values_list("name", "last_seen"))
    events = TagEvent.objects.count()

    requests_seen.clear()
    rescan = scan_repository(registry.url, "team/app")
    assert rescan.status == Scan.Status.SUCCEEDED
    assert sorted(requests_seen) == sorted(
        [("GET", "/v2/team/app/tags/list")]
        + [("HEAD", f"/v2/team/app/manifests/{t}") for t in ("v1", "v2", "v3")]
    )
    assert TagEvent.objects.count() == events
    assert all(t.last_seen > last_seen[t.name] for t in Tag.objects.all())
    assert stored_bytes(registry.url) == blobstore_bytes(registry.root)
    assert rescan.images_count == 3


def test_rescan_heads_reuse_kept_alive_connections(registry, settings):
    """A HEAD per tag over connections kept alive, counted where the registry's TCP connections
    arrive (a proxy in front of it): not one connection per HEAD."""
    base = make_base("os")
    tags = [f"v{i}" for i in range(30)]
    with Pusher(registry.url) as push:
        for tag in tags:
            push.image("team/app", tag, seed=f"app-{tag}", base=base)
    proxy = SlowProxy(registry.url, delay=0).start()
    try:
        assert scan_repository(proxy.url, "team/app").status == Scan.Status.SUCCEEDED
        before = proxy.state.connections
        heads_before = sum(s.method == "HEAD" for s in proxy.state.seen)
        assert scan_repository(proxy.url, "team/app").status == Scan.Status.SUCCEEDED
        heads = sum(s.method == "HEAD" for s in proxy.state.seen) - heads_before
        opened = proxy.state.connections - before
    finally:
        proxy.stop()
    assert heads == len(tags)
    # at most one connection per concurrent request slot (and the tag list's), however many HEADs
    assert opened <= settings.REGISTRY_SCAN_CONCURRENCY + 1 < heads


def test_rescan_reads_new_and_moved_tags_again(registry, requests_seen):
    base = make_base("os")
    with Pusher(registry.url) as push:
        old = push.image("team/app", "v1", seed="v1", base=base)
        push.image("team/app", "v2", seed="v2", base=base)
        scan_repository(registry.url, "team/app")
        moved = push.image("team/app", "v1", seed="v1-rebuilt", base=base)
        added = push.image("team/app", "v3", seed="v3", base=base)
    requests_seen.clear()
    rescan = scan_repository(registry.url, "team/app")
    assert rescan.status == Scan.Status.SUCCEEDED

    gets = [p for m, p in requests_seen if m == "GET"]
    assert sorted(gets) == sorted(
        [
            "/v2/team/app/tags/list",
            f"/v2/team/app/manifests/{moved.digest}",
            f"/v2/team/app/manifests/{added.digest}",
            f"/v2/team/app/blobs/{moved.config_digest}",
            f"/v2/team/app/blobs/{added.config_digest}",
        ]
    )
    # The registry's own answer (skopeo) is what the tags now name.
    tags = dict(Tag.objects.filter(removed_at=None).values_list("name", "manifest__digest"))
    for tag in ("v1", "v2", "v3"):
        assert tags[tag] == skopeo(f"docker://{registry.host}/team/app:{tag}")["Digest"]
    assert tags["v1"] == moved.digest and tags["v3"] == added.digest
    event = TagEvent.objects.get(tag__name="v1", new_digest=moved.digest)
    assert event.old_digest == old.digest
    # The old v1 is untagged but still on disk: its manifest, config and own layer are all it had alone.
    alone = len(old.manifest) + len(old.config) + old.layers[-1][1]
    assert stored_bytes(registry.url) == blobstore_bytes(registry.root) - alone


def test_config_known_from_another_repository_is_not_fetched(registry, requests_seen):
    base = make_base("os")
    with Pusher(registry.url) as push:
        first = push.image("team/app", "v1", seed="app", base=base)
        # Another repository: another manifest (an annotation differs) naming the same config.
        other = push.image(
            "team/other", "v1", seed="app", base=base, config=first.config, annotations={"x": "y"}
        )
    assert other.digest != first.digest and other.config_digest == first.config_digest
    scan_repository(registry.url, "team/app")
    requests_seen.clear()
    scan = scan_repository(registry.url, "team/other")
    assert scan.status == Scan.Status.SUCCEEDED
    assert not any("/blobs/" in p for _, p in requests_seen)
    # The new manifest still says what its config says (skopeo reads the config from the registry).
    row = Manifest.objects.get(digest=other.digest)
    config_doc = skopeo("--config", f"docker://{registry.host}/team/other:v1")
    assert (row.os, row.architecture) == (config_doc["os"], config_doc["architecture"])
    assert row.labels == config_doc["config"]["Labels"]
    assert row.created.isoformat().replace("+00:00", "Z") == config_doc["created"]
    assert HistoryEntry.objects.filter(config=row.config).count() == len(config_doc["history"])
    diff_ids = list(row.manifest_layers.order_by("position").values_list("blob__diff_id", flat=True))
    assert diff_ids == config_doc["rootfs"]["diff_ids"]
    assert stored_bytes(registry.url) == blobstore_bytes(registry.root)
