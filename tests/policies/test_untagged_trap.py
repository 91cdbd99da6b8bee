"""distribution 2.8's `--delete-untagged` trap (`untagged_trap`) on hand-made records whose answer is known
by construction: the untagged children of a tagged index lose their configs and layers, but for those a
manifest a remaining tag names lists, as a layer or as its config. A blob is one file in the registry
however its manifests list it (a config also listed as a layer, a layer listed twice): it counts once."""

from __future__ import annotations

from dataclasses import replace

import pytest

from analytics.models import Registry, Tag
from analytics.selectors.delete_untagged import UntaggedTrap, untagged_trap
from harness.records import image, index, ingest, layer

pytestmark = pytest.mark.django_db

BASE = layer("base", 4000)
AMD_OWN = layer("amd-own", 1500)
ARM_OWN = layer("arm-own", 1600)
ARM_CONFIG = layer("arm-config", 700)  # the arm64 child's config, which it lists as a layer too
CONFIG_ELSEWHERE = layer("config-elsewhere", 90)  # a layer of the arm64 child, a tagged image's config
AMD = image("multi-amd", [BASE, AMD_OWN], arch="amd64")
ARM_LAYERS = [BASE, ARM_OWN, ARM_OWN, ARM_CONFIG, CONFIG_ELSEWHERE]
ARM = replace(image("multi-arm", ARM_LAYERS, arch="arm64"), config=ARM_CONFIG)
MULTI = index("multi", [AMD, ARM])
CONFIGURED = replace(image("configured", [layer("configured", 30)]), config=CONFIG_ELSEWHERE)
OLD = image("old", [layer("old", 2000)])
NEW = image("new", [layer("new", 2100)])


@pytest.fixture
def registry(db):
    registry = Registry.objects.create(name="local", url="http://127.0.0.1:5000")
    ingest(registry, "apps/multi", {"1": MULTI}, extra=[AMD, ARM])
    ingest(registry, "apps/solo", {"1": AMD})  # the amd64 child, tagged in another repository
    ingest(registry, "tools/configured", {"1": CONFIGURED})
    ingest(registry, "tools/old", {"1": OLD, "2": NEW})
    return registry


def trap_after(registry: Registry, *tags: str) -> UntaggedTrap:
    ids = [Tag.objects.get(repository__name=t.split(":")[0], name=t.split(":")[1]).id for t in tags]
    return untagged_trap(registry_id=registry.id, tag_ids=ids)


def test_a_child_blob_listed_as_layer_and_config_or_twice_is_trapped_once(registry):
    # AMD is tagged in apps/solo (its layers and config stay, BASE with them); CONFIG_ELSEWHERE is the config
    # of a tagged image: ARM_OWN (listed twice) and ARM_CONFIG (config and layer) go, once each
    expected = UntaggedTrap(indexes=1, blobs=2, manifests=0, trap_bytes=ARM_OWN.size + ARM_CONFIG.size)
    assert trap_after(registry) == expected
    assert trap_after(registry, "tools/old:1") == expected


def test_a_blob_stays_while_a_remaining_tag_lists_it_as_a_layer_or_as_a_config(registry):
    # without the tagged image whose config it is, CONFIG_ELSEWHERE goes
    assert trap_after(registry, "tools/configured:1") == UntaggedTrap(
        indexes=1, blobs=3, manifests=0, trap_bytes=ARM_OWN.size + ARM_CONFIG.size + CONFIG_ELSEWHERE.size
    )
    # without apps/solo:1, the amd64 child's layers (BASE shared with the arm64 one) and config go
    assert trap_after(registry, "apps/solo:1") == UntaggedTrap(
        indexes=1,
        blobs=5,
        manifests=0,
        trap_bytes=ARM_OWN.size + ARM_CONFIG.size + BASE.size + AMD_OWN.size + AMD.config.size,
    )
    # without the index's tag nothing is trapped: the what-if's rule and 2.8's agree
    assert trap_after(registry, "apps/multi:1") == UntaggedTrap(indexes=0, blobs=0, manifests=0, trap_bytes=0)


def test_a_registry_tagging_no_index_has_no_trap_read_off_its_summary(registry):
    from analytics.models import ScopeFigures

    plain = Registry.objects.create(name="plain", url="http://127.0.0.1:5001")
    ingest(plain, "tools/old", {"1": OLD, "2": NEW})
    assert ScopeFigures.objects.get(registry=plain, repository=None).indexes == 0
    ids = list(Tag.objects.filter(repository__registry=plain).values_list("id", flat=True))
    assert untagged_trap(registry_id=plain.id, tag_ids=ids) == UntaggedTrap(0, 0, 0, 0)
    # the registry tagging one counts it, and its trap is computed
    assert ScopeFigures.objects.get(registry=registry, repository=None).indexes == 1
    assert trap_after(registry).indexes == 1
    # a rescan that drops the index's tag: none counted, none trapped
    ingest(registry, "apps/multi", {}, extra=[MULTI, AMD, ARM])
    assert ScopeFigures.objects.get(registry=registry, repository=None).indexes == 0
    assert trap_after(registry) == UntaggedTrap(0, 0, 0, 0)
