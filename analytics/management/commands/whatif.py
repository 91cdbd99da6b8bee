"""`manage.py whatif`: what deleting a set of tags (and collecting garbage) would free, and what of it
stays (freed_bytes + kept_bytes: every untagged byte once). Deletes nothing.

The tags are chosen by the flags, or by a cleanup policy (`--policy FILE`, `-` for standard input: an ECR
lifecycle policy, a GitLab cleanup policy, a Harbor tag retention policy or Layerlens's own rule as JSON;
`--format` names it, else its fields do), previewed by `analytics.policies`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from django.core.management.base import BaseCommand, CommandError

from analytics.errors import LayerlensError
from analytics.policies.document import MAX_POLICY_BYTES
from analytics.policies.preview import FORMATS, PolicyPreview, policy_parse, policy_preview, preview_answer
from analytics.selectors.scope import scope_resolve
from analytics.selectors.whatif import NEWEST_BY, TagRule, whatif


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
        parser.add_argument(
            "--newest-by",
            choices=NEWEST_BY,
            default="first_seen",
            help="How --keep-newest ranks: when the tag was first seen, got its current image, or its "
            "image's config `created`.",
        )
        parser.add_argument("--tag", action="append", default=[], help="repository:tag (repeatable).")
        parser.add_argument(
            "--policy", help="A cleanup policy file (JSON; - reads standard input) instead of the rule flags."
        )
        parser.add_argument(
            "--format", choices=FORMATS, help="The policy's format (default: from its fields)."
        )
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **o):
        if o["policy"] is not None:
            return self.policy(o)
        if o["format"]:
            raise CommandError("--format describes a --policy file")
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

    RULE_FLAGS = ("tag_glob", "not_seen_days", "not_pulled_days", "keep_newest")

    def policy(self, o) -> None:
        flags = [f"--{f.replace('_', '-')}" for f in self.RULE_FLAGS if o[f] is not None] + (
            ["--tag"] if o["tag"] else []
        )
        if flags:
            raise CommandError(f"--policy chooses the tags; {', '.join(flags)} cannot be combined with it")
        try:
            if o["policy"] == "-":
                text = sys.stdin.buffer.read(MAX_POLICY_BYTES + 1)
            else:
                with open(o["policy"], "rb") as f:
                    text = f.read(MAX_POLICY_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"{o['policy']}: {exc.strerror}") from None
        try:
            policy = policy_parse(text, format=o["format"])
            scope = scope_resolve(
                registry=o["registry"], namespace=o["namespace"], repository=o["repository"]
            )
            preview = policy_preview(
                policy=policy,
                registry_id=scope.registry_id,  # type: ignore[arg-type]
                namespace=scope.namespace,
                repository_id=scope.repository_id,
            )
        except LayerlensError as exc:
            raise CommandError(" ".join(str(exc).split())) from exc
        if o["json"]:
            self.stdout.write(json.dumps(preview_answer(preview), default=str, indent=2))
            return
        self.policy_text(preview)

    def policy_text(self, p: PolicyPreview) -> None:
        impact = p.impact
        for repository, tag, digest in p.removed_tags:
            self.stdout.write(f"delete {repository}:{tag}  {digest}")
        for repository, digest in p.removed_untagged:
            self.stdout.write(f"delete untagged {repository}@{digest}")
        self.stdout.write(
            f"{p.format} policy on {p.registry}: tags removed {impact.tags}, kept {p.tags_kept}; "
            f"untagged manifests removed {len(p.removed_untagged)}\n"
            f"freed_bytes {impact.freed_bytes}  (manifests {impact.freed_manifest_bytes} B, "
            f"blobs {impact.freed_blob_bytes} B)\nkept_bytes {impact.kept_bytes}"
        )
        gc = p.delete_untagged
        self.stdout.write(
            f"freed_bytes with distribution 2.8's garbage-collect --delete-untagged {gc['freed_bytes']}  "
            f"(trap_bytes {gc['trap_bytes']}: the untagged children of {gc['indexes_kept']} tagged indexes "
            "that stay)"
        )
        if impact.repositories:
            self.stdout.write("per repository (freed bytes held by that repository's removed images alone):")
        for r in impact.repositories:
            self.stdout.write(
                f"  {r.repository}: tags removed {r.tags}, manifests untagged {r.manifests_untagged}, "
                f"freed {r.manifests_freed} manifests and {r.blobs_freed} blobs, {r.freed_bytes} B"
            )
        shared = impact.shared_freed
        if shared is not None and shared.freed_bytes:
            self.stdout.write(
                f"  shared between removed repositories: {shared.manifests} manifests and {shared.blobs} "
                f"blobs, {shared.freed_bytes} B"
            )
        if impact.kept_largest:
            self.stdout.write("largest blobs that stay, and who keeps them:")
        for k in impact.kept_largest:
            held = ", ".join(
                f"{h.repository}:{','.join(h.tags)}" if h.tags else f"{h.repository}@{h.digest} (in an index)"
                for h in k.holders
            )
            more = f" and {k.kept_by - len(k.holders)} more" if k.kept_by > len(k.holders) else ""
            self.stdout.write(f"  {k.digest} {k.size} B: kept by {held}{more}")
        if p.push_times is not None:
            t = p.push_times
            self.stdout.write(f"push times from {t['source']} (events {t['events']}, scans {t['scans']})")
        if p.pulls is not None:
            self.stdout.write(f"pulls counted since {p.pulls['registries'][0]['counted_since']}")
        for note in p.notes:
            self.stdout.write(f"note: {note}")
