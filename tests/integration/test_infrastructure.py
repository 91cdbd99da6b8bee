"""The test infrastructure itself: real registry, real dockerd, real image builders.

Expected facts are computed independently with skopeo and by reading the registry's storage.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from harness.images import (
    DOCKER_V2,
    OCI_INDEX,
    OCI_MANIFEST,
    skopeo_inspect_config,
    skopeo_inspect_raw,
)
from harness.registry import RegistryServer, blobstore_bytes, blobstore_digests
from tests.support.fixtures import BuiltRegistry

pytestmark = pytest.mark.integration


def _manifest(ref: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(skopeo_inspect_raw(ref))
    return doc


def _all_manifests(built: BuiltRegistry) -> list[dict[str, Any]]:
    """Every image manifest in the registry (index children included)."""
    out = []
    for img in built.images:
        doc = _manifest(img.ref)
        if "manifests" in doc:
            for child in doc["manifests"]:
                out.append(_manifest(f"{built.host}/{img.repository}@{child['digest']}"))
        else:
            out.append(doc)
    return out


def test_expected_tags_pushed(test_registry: BuiltRegistry) -> None:
    got = {(i.repository, i.tag) for i in test_registry.images}
    assert got == {
        ("base/os", "1"),
        ("apps/web", "1.0"),
        ("apps/web", "latest"),
        ("apps/api", "1.0"),
        ("mirror/os", "1"),
        ("oci/tool", "1"),
        ("multi/app", "1"),
    }
    print(f"build_test_registry took {test_registry.build_seconds:.1f}s")


def test_blobstore_has_bytes(test_registry: BuiltRegistry) -> None:
    root = test_registry.registry.root
    digests = blobstore_digests(root)
    assert blobstore_bytes(root) > 0
    assert blobstore_bytes(root) == sum(digests.values())
    assert all(d.startswith("sha256:") and len(d) == 71 for d in digests)


def test_every_pushed_digest_is_in_the_blob_store(test_registry: BuiltRegistry) -> None:
    store = blobstore_digests(test_registry.registry.root)
    for img in test_registry.images:
        assert img.digest in store, img.ref
        assert store[img.digest] == len(skopeo_inspect_raw(img.ref))
    for man in _all_manifests(test_registry):
        for desc in [man["config"], *man["layers"]]:
            assert store.get(desc["digest"]) == desc["size"], desc


def test_layer_sizes_are_small_and_distinct(test_registry: BuiltRegistry) -> None:
    layers = {
        layer["digest"]: layer["size"] for man in _all_manifests(test_registry) for layer in man["layers"]
    }
    assert len(layers) >= 9
    assert all(50_000 < size < 600_000 for size in layers.values()), layers
    assert len(set(layers.values())) == len(layers), "layer sizes should be distinct"


def test_media_types(test_registry: BuiltRegistry) -> None:
    for img in test_registry.images:
        doc = _manifest(img.ref)
        if img.built_with == "docker":
            assert img.media_type == DOCKER_V2 == doc["mediaType"]
        elif img.repository == "multi/app":
            assert img.media_type == OCI_INDEX == doc["mediaType"]
        else:
            assert img.media_type == OCI_MANIFEST
            assert doc.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST
            assert doc["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"


def test_multi_app_is_an_index_with_two_platform_children(test_registry: BuiltRegistry) -> None:
    ref = test_registry.ref("multi/app", "1")
    index = _manifest(ref)
    assert index["mediaType"] == OCI_INDEX
    assert len(index["manifests"]) == 2
    plats = sorted((m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"])
    assert plats == [("linux", "amd64"), ("linux", "arm64")]
    children = [_manifest(f"{test_registry.host}/multi/app@{m['digest']}") for m in index["manifests"]]
    layer_sets = [[layer["digest"] for layer in c["layers"]] for c in children]
    assert layer_sets[0][0] == layer_sets[1][0], "first layer is shared"
    assert layer_sets[0][1:] != layer_sets[1][1:], "arch layers differ"
    archs = sorted(
        skopeo_inspect_config(f"{test_registry.host}/multi/app@{m['digest']}")["architecture"]
        for m in index["manifests"]
    )
    assert archs == ["amd64", "arm64"]


def test_tags_sharing_a_digest(test_registry: BuiltRegistry) -> None:
    web10 = test_registry.image("apps/web", "1.0")
    latest = test_registry.image("apps/web", "latest")
    assert web10.digest == latest.digest
    assert test_registry.image("mirror/os", "1").digest == test_registry.image("base/os", "1").digest


def test_derived_images_start_with_base_layers(test_registry: BuiltRegistry) -> None:
    base = _manifest(test_registry.ref("base/os", "1"))
    web = _manifest(test_registry.ref("apps/web", "1.0"))
    api = _manifest(test_registry.ref("apps/api", "1.0"))
    assert len(base["layers"]) == 2
    assert len(web["layers"]) == len(api["layers"]) == 3
    assert web["layers"][:2] == base["layers"]
    assert api["layers"][:2] == base["layers"]
    assert web["layers"][2]["digest"] != api["layers"][2]["digest"]


def test_history_has_empty_layers(test_registry: BuiltRegistry) -> None:
    for repo, tag in (("base/os", "1"), ("apps/web", "1.0"), ("oci/tool", "1")):
        ref = test_registry.ref(repo, tag)
        cfg = skopeo_inspect_config(ref)
        history = cfg["history"]
        non_empty = [h for h in history if not h.get("empty_layer")]
        assert len(non_empty) == len(_manifest(ref)["layers"]) == len(cfg["rootfs"]["diff_ids"])
        assert any(h.get("empty_layer") for h in history), ref
    tool_history = skopeo_inspect_config(test_registry.ref("oci/tool", "1"))["history"]
    assert any("umoci config" in h.get("created_by", "") for h in tool_history)


def test_registry_basic_auth() -> None:
    with RegistryServer(username="alice", password="s3cret") as reg:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(reg.url + "/v2/", timeout=5)
        assert err.value.code == 401
        req = urllib.request.Request(reg.url + "/v2/", headers=reg.auth_header)
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert resp.status == 200
