"""Documented examples as rows: each fixture's repositories ingested as a scan would, their push and pull
times set as the fixture says (relative to now), so a preview can be compared with the documented result."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

from analytics.models import ManifestPulls, Registry, RepositoryManifest, Tag, TagEvent
from harness import records as f

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "policies"


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _expand(entries: list[dict]) -> list[dict]:
    out = []
    for e in entries:
        for i in range(e.get("count", 1)):
            item = {k: (v.format(i=i) if isinstance(v, str) else v) for k, v in e.items()}
            item["tags"] = [t.format(i=i) for t in e["tags"]]
            out.append(item)
    return out


def _ago(entry: dict, what: str, now: datetime) -> datetime | None:
    if f"{what}_days_ago" in entry:
        return now - timedelta(days=float(entry[f"{what}_days_ago"]))
    if f"{what}_hours_ago" in entry:
        return now - timedelta(hours=float(entry[f"{what}_hours_ago"]))
    return None


def build(registry: Registry, repositories: dict[str, list[dict]], now: datetime) -> dict[str, str]:
    """Ingest the repositories; digest -> image name."""
    names: dict[str, str] = {}
    for repo_name, entries in repositories.items():
        images = _expand(entries)
        made = {
            e["image"]: f.image(f"{repo_name}/{e['image']}", [f.layer(f"{repo_name}/{e['image']}", 1000)])
            for e in images
        }
        tags = {t: made[e["image"]] for e in images for t in e["tags"]}
        untagged = {f"was-{e['image']}": made[e["image"]] for e in images if not e["tags"]}
        repo = f.ingest(registry, repo_name, {**tags, **untagged})
        if untagged:  # the tag goes, the holding stays, untagged
            f.ingest(registry, repo_name, tags)
        for e in images:
            digest = made[e["image"]].digest
            names[digest] = e["image"]
            pushed = _ago(e, "pushed", now)
            RepositoryManifest.objects.filter(repository=repo, manifest__digest=digest).update(
                first_seen=pushed
            )
            Tag.objects.filter(repository=repo, name__in=e["tags"]).update(
                first_seen=pushed, current_since=pushed
            )
            TagEvent.objects.filter(tag__repository=repo, tag__name__in=e["tags"]).update(seen_at=pushed)
            pulled = _ago(e, "pulled", now)
            if pulled is not None:
                ManifestPulls.objects.create(
                    repository=repo, digest=digest, pulls=1, first_pulled_at=pulled, last_pulled_at=pulled
                )
    return names
