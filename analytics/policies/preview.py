"""A cleanup policy previewed: parsed in its format, evaluated over a registry's rows, priced.

1. `policy_parse`: the text read (`document`), its format given or guessed from its fields, parsed by
   that format's module (each refusal names a line or a JSON path).
2. `policy_preview`: a policy reading pulls is refused when Layerlens counts none for the scope, or
   fewer days of them than the policy asks for (`selectors.pulls.pull_coverage`), never guessed; then
   the format selects tags and untagged images in SQL over the scope (`rows`: only the selection and
   its counts come back), and the tags' deletion is priced by `selectors.whatif.deletion_impact`, the
   registry's garbage-collection rule (no second size rule).

Untagged images a policy expires are listed but add nothing to `freed_bytes`: the what-if follows
`garbage-collect --delete-untagged`, which removes untagged manifests whatever a policy says, so their
bytes are the collector's, not the policy's.

The answer also says, from the same statement, each repository's part of `freed_bytes` (a byte several
repositories of the selection all lost is counted once, on a shared line), the largest blobs that stay
and which kept images hold them (`selectors.kept`), and what distribution 2.8's `garbage-collect
--delete-untagged` would free instead (`selectors.delete_untagged`: it also takes the untagged children
of the tagged multi-platform indexes that stay: 2.8 marks an index's direct references only), beside
`freed_bytes`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Protocol

from django.utils import timezone

from analytics.errors import InvalidPolicy, InvalidRequest, SelectionTooLarge
from analytics.models import Registry
from analytics.policies.document import Node, document_read
from analytics.policies.ecr import ecr_parse
from analytics.policies.gitlab import FIELDS as GITLAB_FIELDS
from analytics.policies.gitlab import WRAPPER as GITLAB_WRAPPER
from analytics.policies.gitlab import gitlab_parse
from analytics.policies.harbor import harbor_parse
from analytics.policies.layerlens import FIELDS as LAYERLENS_FIELDS
from analytics.policies.layerlens import layerlens_parse
from analytics.policies.rows import EVENTS, SCANS, Scope, Selection, scope_read
from analytics.selectors import pulls
from analytics.selectors.delete_untagged import untagged_trap
from analytics.selectors.whatif import DeletionImpact, TagRule, deletion_impact, selection_holdings

FORMATS = ("ecr", "gitlab", "harbor", "layerlens")
PARSERS = {"ecr": ecr_parse, "gitlab": gitlab_parse, "harbor": harbor_parse, "layerlens": layerlens_parse}


class Policy(Protocol):
    format: str
    reads: str | None  # "images", "tags" or None: whose push times the selection reads

    @property
    def pull_window(self) -> int | None: ...

    def select(self, scope: Scope, now: datetime) -> Selection: ...


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
    # what distribution 2.8's garbage-collect --delete-untagged frees after the same deletions: freed_bytes
    # plus trap_bytes, the content of kept indexes' untagged children it takes too
    delete_untagged: dict = field(default_factory=dict)
    removed_tags_more: bool = False  # the list stops at the limit asked; impact.tags counts them all
    removed_untagged_count: int = 0
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


def _push_times(selection: Selection) -> dict | None:
    if selection.pushed_from is None:
        return None
    events, scans = selection.pushed_from[EVENTS], selection.pushed_from[SCANS]
    source = " and ".join(s for s, n in ((EVENTS, events), (SCANS, scans)) if n) or "none read"
    return {
        "source": source,
        EVENTS: events,
        SCANS: scans,
        "rule": "the earliest of the registry's push events Layerlens keeps and the first time a scan saw it",
    }


def scope_check(*, registry_id: int, namespace: str | None, repository_id: int | None, most: int) -> None:
    """A preview reads every image and tag of its scope: a scope holding more than `most` is refused
    (SelectionTooLarge) before any row is read, naming how to narrow it."""
    place = TagRule(registry_id=registry_id, namespace=namespace, repository_id=repository_id)
    held = selection_holdings(place)
    if held > most:
        raise SelectionTooLarge(
            f"this scope holds {held:,} images and other manifests; a request previews a policy over at most "
            f"{most:,} (POLICY_PREVIEW_MAX_HOLDINGS). Name a namespace or repository, or preview it as a "
            "job (POST /api/v1/policies/preview/jobs/) or with manage.py whatif --policy FILE, which have no "
            "such bound"
        )


def _selected(policy: Policy, *, registry_id: int, namespace, repository_id, now):
    """(registry, pulls' coverage, scope, selection): the pulls checked, then the format's selection."""
    registry = Registry.objects.get(id=registry_id)
    pull_data = _pulls_check(
        policy, registry=registry, namespace=namespace, repository_id=repository_id, now=now
    )
    scope = scope_read(registry_id=registry_id, namespace=namespace, repository_id=repository_id)
    return registry, pull_data, scope, policy.select(scope, now)


@dataclass(frozen=True)
class PolicyTotals:
    """A preview's figures without its lists and parts: what a saved policy's series records."""

    freed_bytes: int
    tags_removed: int
    manifests_freed: int
    blobs_freed: int
    untagged_expired: int
    push_times: str  # where the selection's push times came from ("" when it reads none)


def policy_totals(
    *,
    policy: Policy,
    registry_id: int,
    namespace: str | None = None,
    repository_id: int | None = None,
    now: datetime | None = None,
) -> PolicyTotals:
    """`policy_preview`'s totals alone: the same selection, priced by the what-if statement without the
    repositories' parts, the kept blobs, the lists or the 2.8 collector's trap (the cheaper statement)."""
    now = now or timezone.now()
    _, _, _, selection = _selected(
        policy, registry_id=registry_id, namespace=namespace, repository_id=repository_id, now=now
    )
    impact = deletion_impact(tag_ids=sorted(selection.tag_ids), details=False, registry_id=registry_id)
    return PolicyTotals(
        freed_bytes=impact.freed_bytes,
        tags_removed=impact.tags,
        manifests_freed=impact.manifests_freed,
        blobs_freed=impact.blobs_freed,
        untagged_expired=len(selection.untagged),
        push_times=(_push_times(selection) or {}).get("source", ""),
    )


def policy_preview(
    *,
    policy: Policy,
    registry_id: int,
    namespace: str | None = None,
    repository_id: int | None = None,
    now: datetime | None = None,
    limit: int | None = None,
    columns: bool = True,
) -> PolicyPreview:
    """What the policy removes from the scope, and what deleting it (then collecting garbage) frees.
    With a `limit`, the lists (removed tags, untagged, lost manifests, repositories) stop at that many.
    `columns`: a large selection may be judged over the registry's columns (a worker or the command:
    they hold the whole registry in memory; a web request's bounded scope is the statement's)."""
    now = now or timezone.now()
    registry, pull_data, scope, selection = _selected(
        policy, registry_id=registry_id, namespace=namespace, repository_id=repository_id, now=now
    )
    tag_ids = sorted(selection.tag_ids)
    impact = deletion_impact(
        tag_ids=tag_ids, limit=limit, by_repository=True, registry_id=registry_id if columns else None
    )
    trap = untagged_trap(registry_id=registry_id, tag_ids=tag_ids)
    notes = []
    if selection.untagged:
        notes.append(
            f"{len(selection.untagged)} untagged manifests expire too; their bytes are not in freed_bytes: "
            "garbage-collect --delete-untagged removes untagged manifests whatever the policy says"
        )
    if getattr(policy, "enabled", None) is False:
        notes.append("the policy says enabled: false; this is what it deletes once enabled")
    if trap.indexes:
        notes.append(
            f"{trap.indexes} tagged multi-platform indexes stay in {registry.name}: distribution 2.8's "
            "garbage-collect --delete-untagged also deletes the content of their untagged children "
            f"(2.8 marks an index's children's manifests, not what they reference; fixed in 3.0), "
            f"{trap.trap_bytes} bytes more than freed_bytes "
            "(delete_untagged.freed_bytes); delete the manifests by digest and collect without "
            "--delete-untagged"
        )
    untagged = sorted(selection.untagged)
    return PolicyPreview(
        format=policy.format,
        registry=registry.name,
        namespace=scope.namespace,
        repository=scope.repository,
        removed_tags=[(r, t, d) for _, r, t, d in impact.deleted_tags],
        removed_untagged=untagged if limit is None else untagged[:limit],
        tags_kept=selection.tags_current - impact.tags,
        push_times=_push_times(selection),
        pulls=pull_data,
        impact=impact,
        delete_untagged={
            "freed_bytes": impact.freed_bytes + trap.trap_bytes,
            "trap_bytes": trap.trap_bytes,
            "indexes_kept": trap.indexes,
            "blobs": trap.blobs,
            "manifests": trap.manifests,
            "collector": "distribution 2.8 garbage-collect --delete-untagged",
        },
        removed_tags_more=impact.deleted_tags_more,
        removed_untagged_count=len(untagged),
        notes=notes,
    )


def preview_answer(preview: PolicyPreview, *, limit: int | None = None) -> dict:
    """A preview as JSON (the API's shape, the page's and the command's): the repositories past `limit`
    summed on one line, so the listed ones, that line and the shared one add up to freed_bytes."""
    data = asdict(preview)
    impact = data["impact"]
    impact["deleted_tags"] = [list(map(str, t)) for t in preview.impact.deleted_tags]
    repositories = preview.impact.repositories
    listed, rest = (repositories, []) if limit is None else (repositories[:limit], repositories[limit:])
    impact["repositories"] = [asdict(r) for r in listed]
    impact["repositories_total"] = len(repositories)
    impact["repositories_rest"] = {
        "manifests": sum(r.manifests_freed for r in rest),
        "blobs": sum(r.blobs_freed for r in rest),
        "freed_bytes": sum(r.freed_bytes for r in rest),
    }
    impact["manifests_next"] = impact["deleted_tags_next"] = None
    impact["manifests_next_url"] = impact["deleted_tags_next_url"] = None
    data["removed_tags"] = [list(t) for t in preview.removed_tags]
    data["removed_untagged"] = [list(t) for t in preview.removed_untagged]
    return data
