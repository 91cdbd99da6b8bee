"""`manage.py whatif`: what deleting a set of tags (and collecting garbage) would free, and what of it
stays (freed_bytes + kept_bytes: every untagged byte once). Deletes nothing."""

from __future__ import annotations

import json
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from analytics.errors import LayerlensError
from analytics.selectors.scope import scope_resolve
from analytics.selectors.whatif import TagRule, whatif


class Command(BaseCommand):
    help = "Bytes freed by deleting tags chosen by a rule, under the registry's garbage-collection rule."

    def add_arguments(self, parser):
        parser.add_argument("--registry", required=True, help="Registry by host:port, URL, name or id.")
        parser.add_argument("--namespace")
        parser.add_argument("--repository")
        parser.add_argument("--tag-glob", help="Tags matching this glob.")
        parser.add_argument("--not-seen-days", type=int, help="Tags last seen more than N days ago.")
        parser.add_argument(
            "--not-pulled-days",
            type=int,
            help="Tags reaching only manifests not pulled in N days (cold tags; pulls from the registry's "
            "events).",
        )
        parser.add_argument("--keep-newest", type=int, help="All but the newest N tags per repository.")
        parser.add_argument("--newest-by", choices=["first_seen", "created"], default="first_seen")
        parser.add_argument("--tag", action="append", default=[], help="repository:tag (repeatable).")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **o):
        try:
            scope = scope_resolve(
                registry=o["registry"], namespace=o["namespace"], repository=o["repository"]
            )
            tags = tuple(tuple(t.rsplit(":", 1)) for t in o["tag"])
            impact = whatif(
                rule=TagRule(
                    registry_id=scope.registry_id,
                    namespace=scope.namespace,
                    repository_id=scope.repository_id,
                    tag_glob=o["tag_glob"],
                    not_seen_days=o["not_seen_days"],
                    not_pulled_days=o["not_pulled_days"],
                    keep_newest=o["keep_newest"],
                    newest_by=o["newest_by"],
                    tags=tags,  # type: ignore[arg-type]
                )
            )
        except LayerlensError as exc:
            raise CommandError(str(exc)) from exc
        if o["json"]:
            self.stdout.write(json.dumps(asdict(impact), default=str, indent=2))
            return
        for _, repo, tag, digest in impact.deleted_tags:
            self.stdout.write(f"delete {repo}:{tag}  {digest}")
        for m in impact.manifests:
            self.stdout.write(
                f"  {'freed' if m.freed else 'stays'} {m.repository}@{m.digest} ({m.kind}, {m.size} B)"
            )
        self.stdout.write(
            f"tags {impact.tags}, manifests freed {impact.manifests_freed}, "
            f"blobs freed {impact.blobs_freed}\nfreed_bytes {impact.freed_bytes}  "
            f"(manifests {impact.freed_manifest_bytes} B, blobs {impact.freed_blob_bytes} B)\n"
            f"kept_bytes {impact.kept_bytes}  "
            f"(stays: {impact.shared_manifests} manifests ({impact.shared_manifest_bytes} B) kept by "
            f"other repositories, {impact.shared_blobs} blobs ({impact.shared_bytes} B) referenced by "
            "kept manifests)"
        )
        if impact.pulls is not None and not impact.pulls["covered"]:
            since = ", ".join(
                f"{r['name']}: {r['counted_since'] or 'never'}" for r in impact.pulls["registries"]
            )
            self.stdout.write(
                f"warning: pulls are counted for less than {impact.pulls['days']} days ({since}): "
                "not pulled may only mean not counted yet"
            )
