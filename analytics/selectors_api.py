"""Small read selectors the API, admin and commands need next to `analytics.reports`.

Each returns a queryset (or one row) with the joins its callers display, so no serializer or admin
column has to run a query of its own.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from analytics.models import (
    Registry,
    Repository,
    RepositoryManifest,
    Scan,
    ScanError,
    Tag,
    TagEvent,
)
from analytics.reports import Scope, images


def registry_list() -> QuerySet[Registry]:
    return Registry.objects.all()


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


def image_get_queryset() -> QuerySet[RepositoryManifest]:
    """Any image by holding id, tagged or not (a retrieve by id should find what a scan once saw)."""
    return images(scope=Scope(include_untagged=True))


def images_with_tag(qs: QuerySet[RepositoryManifest], tag: str) -> QuerySet[RepositoryManifest]:
    """Images a current tag names, directly or through a tagged index listing them."""
    direct = Tag.objects.filter(
        repository_id=OuterRef("repository_id"),
        manifest_id=OuterRef("manifest_id"),
        name=tag,
        removed_at=None,
    )
    via_index = Tag.objects.filter(
        repository_id=OuterRef("repository_id"),
        manifest__entries__child_id=OuterRef("manifest_id"),
        name=tag,
        removed_at=None,
    )
    return qs.filter(Q(Exists(direct)) | Q(Exists(via_index)))
