"""A cleanup policy previewed: parsed in its format, evaluated over a registry's rows, priced.

1. `policy_parse`: the text read (`document`), its format given or guessed from its fields, parsed by
   that format's module (each refusal names a line or a JSON path).
2. `policy_preview`: a policy reading pulls is refused when Layerlens counts none for the scope, or
   fewer days of them than the policy asks for (`selectors.pulls.pull_coverage`), never guessed; then
   the scope's rows are read (`rows.place_rows`), the format selects tags and untagged images, and the
   tags' deletion is priced by `selectors.whatif.deletion_impact`, the registry's garbage-collection rule
   (no second size rule).

Untagged images a policy expires are listed but add nothing to `freed_bytes`: the what-if follows
`garbage-collect --delete-untagged`, which removes untagged manifests whatever a policy says, so their
bytes are the collector's, not the policy's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from django.utils import timezone

from analytics.errors import InvalidPolicy, InvalidRequest
from analytics.models import Manifest, Registry, Tag
from analytics.policies.document import Node, document_read
from analytics.policies.ecr import ecr_parse
from analytics.policies.gitlab import FIELDS as GITLAB_FIELDS
from analytics.policies.gitlab import WRAPPER as GITLAB_WRAPPER
from analytics.policies.gitlab import gitlab_parse
from analytics.policies.harbor import harbor_parse
from analytics.policies.layerlens import FIELDS as LAYERLENS_FIELDS
from analytics.policies.layerlens import layerlens_parse
from analytics.policies.rows import EVENTS, SCANS, PlaceRows, Selection, place_rows
from analytics.selectors import pulls
from analytics.selectors.whatif import DeletionImpact, deletion_impact

FORMATS = ("ecr", "gitlab", "harbor", "layerlens")
PARSERS = {"ecr": ecr_parse, "gitlab": gitlab_parse, "harbor": harbor_parse, "layerlens": layerlens_parse}


class Policy(Protocol):
    format: str
    reads: str | None  # "images", "tags" or None: whose push times the selection reads

    @property
    def pull_window(self) -> int | None: ...

    def select(self, rows: PlaceRows, now: datetime) -> Selection: ...


def format_guess(doc: Node) -> str:
    """The format a document's fields say, or InvalidPolicy asking for --format."""
    value = doc.value
    if isinstance(value, dict):
        rules = value.get("rules")
        first = rules[0] if isinstance(rules, list) and rules and isinstance(rules[0], dict) else {}
        if "rulePriority" in first or "selection" in first:
            return "ecr"
        if "template" in first or "tag_selectors" in first or "algorithm" in value:
            return "harbor"
        if GITLAB_WRAPPER in value or (value and set(value) <= set(GITLAB_FIELDS)):
            return "gitlab"
        if value and set(value) <= set(LAYERLENS_FIELDS):
            return "layerlens"
    raise InvalidPolicy(
        "cannot tell this policy's format from its fields; name it (ecr, gitlab, harbor or layerlens)"
    )


def policy_parse(text: str | bytes, *, format: str | None = None) -> Policy:
    """A policy from its text; `format` one of FORMATS, or None to guess it."""
    if format is not None and format not in FORMATS:
        raise InvalidPolicy(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    doc = Node(document_read(text))
    return PARSERS[format or format_guess(doc)](doc)  # type: ignore[return-value]


@dataclass(frozen=True)
class PolicyPreview:
    format: str
    registry: str
    namespace: str | None
    repository: str | None
    removed_tags: list[tuple[str, str, str]]  # (repository, tag, digest), by repository and tag
    removed_untagged: list[tuple[str, str]]  # (repository, digest): untagged manifests the policy expires
    tags_kept: int
    # where the push times the selection read came from: "events", "scans" or "events and scans", with
    # how many of each; None when the format reads none of its own (the Layerlens rule: scan times)
    push_times: dict | None
    pulls: dict | None  # the pulls' coverage, when the policy reads pulls
    impact: DeletionImpact
    notes: list[str] = field(default_factory=list)


def _pulls_check(policy: Policy, *, registry: Registry, namespace, repository_id, now) -> dict | None:
    window = policy.pull_window
    if window is None:
        return None
    coverage = pulls.pull_coverage(
        registry_id=registry.id,
        namespace=namespace,
        repository_id=repository_id,
        days=max(window, 1),
        now=now,
    )
    data = pulls.coverage_data(coverage)
    since = registry.pulls_counted_since
    if since is None:
        raise InvalidRequest(
            f"this policy reads pulls, and Layerlens counts none for {registry.name}: the registry sends it "
            "no events yet (manage.py registry events-config prints what to configure); refused rather "
            "than guessed"
        )
    if window and not coverage.covered:
        raise InvalidRequest(
            f"this policy reads {window} days of pulls, and Layerlens counts the pulls of {registry.name} "
            f"only since {since.isoformat()}; refused rather than guessed (a shorter window, or later)"
        )
    return data


def _push_times(policy: Policy, rows: PlaceRows) -> dict | None:
    if policy.reads is None:
        return None
    items = rows.images.values() if policy.reads == "images" else rows.tags.values()
    sources = [item.pushed_from for group in items for item in group]
    events, scans = sources.count(EVENTS), sources.count(SCANS)
    source = " and ".join(s for s, n in ((EVENTS, events), (SCANS, scans)) if n) or "none read"
    return {
        "source": source,
        EVENTS: events,
        SCANS: scans,
        "rule": "the earliest of the registry's push events Layerlens keeps and the first time a scan saw it",
    }


def policy_preview(
    *,
    policy: Policy,
    registry_id: int,
    namespace: str | None = None,
    repository_id: int | None = None,
    now: datetime | None = None,
) -> PolicyPreview:
    """What the policy removes from the scope, and what deleting it (then collecting garbage) frees."""
    now = now or timezone.now()
    registry = Registry.objects.get(id=registry_id)
    pull_data = _pulls_check(
        policy, registry=registry, namespace=namespace, repository_id=repository_id, now=now
    )
    rows = place_rows(registry_id=registry_id, namespace=namespace, repository_id=repository_id)
    selection = policy.select(rows, now)
    impact = deletion_impact(tag_ids=sorted(selection.tag_ids))
    current = Tag.objects.filter(repository_id__in=rows.repositories, removed_at=None, manifest__isnull=False)
    notes = []
    if selection.untagged:
        notes.append(
            f"{len(selection.untagged)} untagged manifests expire too; their bytes are not in freed_bytes: "
            "garbage-collect --delete-untagged removes untagged manifests whatever the policy says"
        )
    if getattr(policy, "enabled", None) is False:
        notes.append("the policy says enabled: false; this is what it deletes once enabled")
    kept_indexes = (
        current.exclude(id__in=selection.tag_ids).filter(manifest__kind=Manifest.Kind.INDEX).exists()
    )
    if kept_indexes:
        notes.append(
            "tagged multi-platform indexes stay: distribution 2.8's garbage-collect --delete-untagged also "
            "deletes their untagged children, more than freed_bytes; collect without --delete-untagged "
            "after deleting by digest"
        )
    return PolicyPreview(
        format=policy.format,
        registry=registry.name,
        namespace=rows.namespace,
        repository=rows.repositories.get(repository_id) if repository_id is not None else None,
        removed_tags=[(r, t, d) for _, r, t, d in impact.deleted_tags],
        removed_untagged=sorted((i.repository, i.digest) for i in selection.untagged),
        tags_kept=current.count() - impact.tags,
        push_times=_push_times(policy, rows),
        pulls=pull_data,
        impact=impact,
        notes=notes,
    )
