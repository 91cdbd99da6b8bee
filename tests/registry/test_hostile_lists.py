"""Tag lists a registry could make endless, odd or slow: each ends as one bounded error of its own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.support.hostile_registry import BAD_TAGS, HostileRegistry, hostile_registry
from workers.registry import RegistryClient, snapshot_repository
from workers.registry import client as client_module
from workers.registry import listing as listing_module
from workers.registry.errors import ProtocolError, SlowReplyError, TransportError


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileRegistry]:
    with hostile_registry() as reg:
        yield reg


def _client(reg: HostileRegistry, **kwargs: object) -> RegistryClient:
    kwargs.setdefault("retries", 0)
    return RegistryClient(reg.base_url, allow_internal=True, **kwargs)  # type: ignore[arg-type]


def test_an_endless_tag_list_stops_at_the_tag_cap(hostile: HostileRegistry) -> None:
    with _client(hostile, page_size=1000, max_tags=3000) as client, pytest.raises(ProtocolError) as info:
        snapshot_repository(client, "abuse/endless")
    assert "tags list goes on past 3,000 entries" in str(info.value)
    assert "abuse/endless" in str(info.value)


def test_the_default_tag_cap_is_far_below_the_endless_list() -> None:
    from tests.support.hostile_registry import ENDLESS_TAGS

    assert client_module.MAX_TAGS < ENDLESS_TAGS
    assert RegistryClient("http://127.0.0.1:5000").max_tags == client_module.MAX_TAGS


def test_an_endless_tag_list_of_small_pages_stops_at_the_page_cap(
    hostile: HostileRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing_module, "MAX_PAGES", 40)
    with _client(hostile, page_size=10) as client, pytest.raises(ProtocolError, match="after 40 pages"):
        list(client.iter_tags("abuse/endless"))


def test_long_and_nul_tag_names_fail_alone_with_a_readable_reference(hostile: HostileRegistry) -> None:
    with _client(hostile) as client:
        snapshot = snapshot_repository(client, "abuse/tags")
    assert list(snapshot.tags) == ["v1"]
    failures = {f.reference: f for f in snapshot.failures}
    assert set(failures) == set(BAD_TAGS)
    assert all(f.kind == "ReferenceError" for f in failures.values())
    assert "longer than 128" in failures["a" * 300].message
    assert "\x00" not in failures["bad\x00tag"].message  # shown escaped


def _asked(reg: HostileRegistry, since: int, part: str) -> int:
    return sum(part in path for path in reg.requests[since:])


def test_an_endless_tag_list_is_refused_before_any_of_its_manifests_is_asked_for(
    hostile: HostileRegistry,
) -> None:
    since = len(hostile.requests)
    with _client(hostile, page_size=1000, max_tags=3000) as client, pytest.raises(ProtocolError):
        snapshot_repository(client, "abuse/endless")
    assert _asked(hostile, since, "/abuse/endless/manifests/") == 0
    assert _asked(hostile, since, "/abuse/endless/tags/list") == 4  # 3 pages to the cap, 1 past it


@pytest.mark.parametrize("repository", ["abuse/drip", "abuse/header-drip"])
def test_a_reply_that_drips_ends_at_the_total_time_limit(hostile: HostileRegistry, repository: str) -> None:
    since = len(hostile.requests)
    t0 = time.monotonic()
    with (
        _client(hostile, timeout=5, total_timeout=1.0, retries=3) as client,
        pytest.raises(SlowReplyError, match="total time limit") as info,
    ):
        list(client.iter_tags(repository))
    assert time.monotonic() - t0 < 4
    # Cut for being slow: not transient, and not sent again by the client's own retries either.
    assert isinstance(info.value, TransportError) and not info.value.transient
    assert _asked(hostile, since, f"/{repository}/tags/list") == 1


@pytest.mark.parametrize("repository", ["abuse/drip", "abuse/header-drip"])
def test_a_reply_that_drips_is_cut_at_the_end_of_its_first_slow_window(
    hostile: HostileRegistry, repository: str
) -> None:
    """20 bytes a second against 1 KiB in each 1 s window: cut after about a second of bytes, long
    before the 60 s total time limit or the 5 s read timeout would end it, and tried once."""
    since = len(hostile.requests)
    t0 = time.monotonic()
    with (
        _client(
            hostile, timeout=5, total_timeout=60, retries=3, min_transfer_bytes=1024, min_transfer_window=1.0
        ) as client,
        pytest.raises(SlowReplyError, match=r"fewer than 1,024 bytes in 1s \(minimum transfer rate") as info,
    ):
        list(client.iter_tags(repository))
    assert time.monotonic() - t0 < 2.5
    assert not info.value.transient and repository in str(info.value)
    assert _asked(hostile, since, f"/{repository}/tags/list") == 1


def test_a_reply_at_the_minimum_rate_is_read_to_its_end(hostile: HostileRegistry) -> None:
    """The same drip against a rate it meets (10 bytes in each 1 s window) reads on past the window."""
    t0 = time.monotonic()
    with (
        _client(
            hostile, timeout=5, total_timeout=2.5, min_transfer_bytes=10, min_transfer_window=1.0
        ) as client,
        pytest.raises(SlowReplyError, match="total time limit"),
    ):
        list(client.iter_tags("abuse/drip"))
    assert time.monotonic() - t0 >= 2.4


def _many_layers_image(reg, repository: str, tag: str, count: int) -> None:
    import json

    from .fakes import DOCKER_V2, fixture

    reg.add_blob(fixture("docker_v2_config.json"))
    doc = json.loads(fixture("docker_v2_manifest.json"))
    one = doc["layers"][0]
    doc["layers"] = [{**one, "digest": "sha256:" + f"{i:064x}"} for i in range(count)]
    reg.add_manifest(repository, tag, json.dumps(doc).encode(), DOCKER_V2)


def test_a_manifest_over_the_layer_cap_fails_that_image_unread_and_the_rest_goes_on() -> None:
    from workers.registry.snapshot import MAX_MANIFEST_LAYERS

    from .fakes import FakeRegistry

    reg = FakeRegistry()
    reg.add_docker_image("team/app", "good")
    _many_layers_image(reg, "team/app", "at-cap", MAX_MANIFEST_LAYERS)
    _many_layers_image(reg, "team/app", "deep", MAX_MANIFEST_LAYERS + 1)
    with reg.client() as client:
        snapshot = snapshot_repository(client, "team/app")
    assert set(snapshot.tags) == {"good", "at-cap"}
    (failure,) = snapshot.failures
    assert failure.reference == "deep" and failure.kind == "ManifestError"
    assert f"manifest of {MAX_MANIFEST_LAYERS + 1} layers is over the {MAX_MANIFEST_LAYERS} limit" in (
        failure.message
    )
