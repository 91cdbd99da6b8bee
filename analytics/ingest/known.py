"""What the database already holds, by digest: the answers a registry snapshot asks for before fetching.

The crawl (`workers.registry.snapshot.snapshot_repository`) takes these as callbacks, so it never
imports Django; it calls them from the scanning thread. A manifest row is written with its layers,
history and index entries in one transaction (`analytics.ingest.snapshot`), so "a row exists" means
"complete": nothing of it needs fetching again, from any repository of any registry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

from analytics.models import Manifest, ManifestLayer, Tag
from workers.registry.builders import merge_platform
from workers.registry.records import ImageRecord, IndexRecord, Platform


def manifests_known(digests: Collection[str]) -> set[str]:
    """The manifest digests among `digests` that have a row (with its layers or index entries)."""
    if not digests:
        return set()
    return set(Manifest.objects.filter(digest__in=list(digests)).values_list("digest", flat=True))


def configs_known(digests: Collection[str]) -> set[str]:
    """The config digests among `digests` some stored image names: its blob, history rows and the
    facts taken from it (platform, created, labels) are in the database already."""
    if not digests:
        return set()
    return set(
        Manifest.objects.filter(config__digest__in=list(digests))
        .values_list("config__digest", flat=True)
        .distinct()
    )


def manifest_ids(digests: Iterable[str]) -> dict[str, int]:
    """Manifest id by digest, for the digests that have a row."""
    wanted = list(set(digests))
    if not wanted:
        return {}
    return dict(Manifest.objects.filter(digest__in=wanted).values_list("digest", "id"))


def tags_current(*, repository_id: int) -> dict[str, str]:
    """Tag name -> the digest it named at the last scan, for the repository's current tags."""
    # One plain query: the dict holds every row anyway, and a chunked iterator outside a transaction
    # is a WITH HOLD cursor (declare, fetch, close) for every repository a rescan begins.
    return dict(
        Tag.objects.filter(
            repository_id=repository_id, removed_at__isnull=True, manifest__isnull=False
        ).values_list("name", "manifest__digest")
    )


def known_config_fill(records: list[ImageRecord | IndexRecord]) -> list[ImageRecord | IndexRecord]:
    """Complete the images recorded without reading their config (`config_known`) from a stored image
    naming the same config: platform (the record's own fields win), created, labels, and the layers'
    `diff_id`s by position when the layer counts agree (a recompressed copy has other layer blobs)."""
    wanted = {r.config.digest for r in records if isinstance(r, ImageRecord) and r.config_known and r.config}
    if not wanted:
        return records
    siblings = {
        row["config__digest"]: row
        for row in Manifest.objects.filter(config__digest__in=wanted)
        .order_by("config_id", "id")
        .distinct("config_id")
        .values(
            "id",
            "config__digest",
            "os",
            "architecture",
            "variant",
            "os_version",
            "created",
            "labels",
            "layer_count",
        )
    }
    diff_ids: dict[int, dict[int, str]] = {}
    for manifest_id, position, diff_id in ManifestLayer.objects.filter(
        manifest_id__in=[s["id"] for s in siblings.values()]
    ).values_list("manifest_id", "position", "blob__diff_id"):
        diff_ids.setdefault(manifest_id, {})[position] = diff_id
    out: list[ImageRecord | IndexRecord] = []
    for r in records:
        sibling = siblings.get(r.config.digest) if isinstance(r, ImageRecord) and r.config else None
        if not isinstance(r, ImageRecord) or not r.config_known or sibling is None:
            out.append(r)
            continue
        layers = r.layers
        by_position = diff_ids.get(sibling["id"], {})
        if sibling["layer_count"] == len(layers):
            layers = tuple(
                layer if layer.diff_id else dataclasses.replace(layer, diff_id=by_position.get(i) or None)
                for i, layer in enumerate(layers)
            )
        platform = Platform(
            os=sibling["os"],
            architecture=sibling["architecture"],
            variant=sibling["variant"],
            os_version=sibling["os_version"],
        )
        out.append(
            dataclasses.replace(
                r,
                layers=layers,
                platform=merge_platform(r.platform, platform),
                created=sibling["created"],
                labels=dict(sibling["labels"] or {}),
            )
        )
    return out
