"""Rows as the API, admin and commands list them: registries, repositories, tags, tag events, scans.

Each returns a queryset (or one row) with the joins its callers display, so no serializer or admin
column has to run a query of its own.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from analytics.errors import NotFound
from analytics.models import Registry, Repository, Scan, ScanError, Tag, TagEvent
from analytics.selectors.inbox import registry_inbox_annotate


def registry_list() -> QuerySet[Registry]:
    """Registries with their events inbox (`events_pending`, `events_oldest_pending_at`)."""
    return registry_inbox_annotate(Registry.objects.all())


def repository_list() -> QuerySet[Repository]:
    return Repository.objects.select_related("registry")


def tag_list(*, include_removed: bool = False) -> QuerySet[Tag]:
    qs = Tag.objects.select_related("repository__registry", "manifest")
    if not include_removed:
        qs = qs.filter(removed_at=None)
    return qs


def tag_event_list(*, tag_id: int | None = None) -> QuerySet[TagEvent]:
    qs = TagEvent.objects.select_related("tag__repository__registry")
    if tag_id is not None:
        qs = qs.filter(tag_id=tag_id)
    return qs


def scan_list() -> QuerySet[Scan]:
    return Scan.objects.select_related("registry", "repository")


def scan_errors(*, scan_id: int, include_children: bool = False) -> QuerySet[ScanError]:
    """A scan's errors; with `include_children`, those of its per-repository scans too."""
    where = Q(scan_id=scan_id) | Q(scan__parent_id=scan_id) if include_children else Q(scan_id=scan_id)
    return ScanError.objects.filter(where).order_by("id")


def registry_lookup(identifier: str) -> Registry:
    """A registry by id, name, base URL or host:port."""
    ident = identifier.strip().rstrip("/")
    qs = Registry.objects.all()
    if ident.isdigit():
        found = qs.filter(id=int(ident)).first()
    else:
        found = qs.filter(Q(name=ident) | Q(url=ident)).first()
        if found is None:
            host = ident.split("://", 1)[-1]
            found = qs.filter(Q(url=f"http://{host}") | Q(url=f"https://{host}")).first()
    if found is None:
        raise NotFound(f"no registry {identifier!r}")
    return found
