"""The list filters: django-filter FilterSets (every filter declares its type, so the OpenAPI schema
documents it) and the filter backends the viewsets use."""

from __future__ import annotations

import django_filters as filters
from django.db.models import Q
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.filters import OrderingFilter, SearchFilter

from analytics.models import Blob, Repository, RepositoryManifest, Scan, Tag, TagEvent
from analytics.selectors.images import images_with_tag


def _namespace(queryset, field: str, value: str):
    ns = value.strip("/")
    return queryset.filter(Q(**{field: ns}) | Q(**{f"{field}__startswith": ns + "/"}))


class RepositoryFilter(filters.FilterSet):
    registry = filters.NumberFilter(field_name="registry_id", help_text="Registry id.")
    name = filters.CharFilter(field_name="name", help_text="Exact repository name.")
    namespace = filters.CharFilter(
        method="filter_namespace", help_text="Repository path prefix, e.g. `team`."
    )
    tracked = filters.BooleanFilter(field_name="tracked")

    class Meta:
        model = Repository
        fields = ["registry", "name", "namespace", "tracked"]

    def filter_namespace(self, queryset, name, value):
        return _namespace(queryset, "name", value)


class TagFilter(filters.FilterSet):
    repository = filters.NumberFilter(field_name="repository_id", help_text="Repository id.")
    registry = filters.NumberFilter(field_name="repository__registry_id", help_text="Registry id.")
    name = filters.CharFilter(field_name="name", help_text="Exact tag name.")
    digest = filters.CharFilter(field_name="manifest__digest", help_text="Digest the tag points at.")
    include_removed = filters.BooleanFilter(
        method="filter_noop", help_text="Also list tags that vanished (default false)."
    )

    class Meta:
        model = Tag
        fields = ["repository", "registry", "name", "digest", "include_removed"]

    def filter_noop(self, queryset, name, value):
        return queryset  # applied by the view's selector, since the default (false) must filter too


class TagEventFilter(filters.FilterSet):
    tag = filters.NumberFilter(field_name="tag_id")
    repository = filters.NumberFilter(field_name="tag__repository_id", help_text="Repository id.")
    registry = filters.NumberFilter(field_name="tag__repository__registry_id", help_text="Registry id.")
    tag_name = filters.CharFilter(field_name="tag__name")
    digest = filters.CharFilter(method="filter_digest", help_text="Old or new digest.")
    scan = filters.NumberFilter(field_name="scan_id")
    since = filters.IsoDateTimeFilter(field_name="seen_at", lookup_expr="gte")

    class Meta:
        model = TagEvent
        fields = ["tag", "repository", "registry", "tag_name", "digest", "scan", "since"]

    def filter_digest(self, queryset, name, value):
        return queryset.filter(Q(old_digest=value) | Q(new_digest=value))


class ImageFilter(filters.FilterSet):
    """Filters on top of the scope (`registry`, `namespace`, `repository`, `include_untagged`)."""

    digest = filters.CharFilter(field_name="manifest__digest", help_text="Manifest digest.")
    os = filters.CharFilter(field_name="manifest__os")
    architecture = filters.CharFilter(field_name="manifest__architecture")
    tag = filters.CharFilter(method="filter_tag", help_text="A current tag naming the image (or its index).")
    layer = filters.CharFilter(
        field_name="manifest__manifest_layers__blob__digest",
        distinct=True,
        help_text="Images holding this layer digest.",
    )

    class Meta:
        model = RepositoryManifest
        fields = ["digest", "os", "architecture", "tag", "layer"]

    def filter_tag(self, queryset, name, value):
        return images_with_tag(queryset, value)


class LayerFilter(filters.FilterSet):
    digest = filters.CharFilter(field_name="digest")
    media_type = filters.CharFilter(field_name="media_type")
    diff_id = filters.CharFilter(field_name="diff_id")
    min_images = filters.NumberFilter(
        field_name="images", lookup_expr="gte", help_text="Held by at least N images."
    )
    min_size = filters.NumberFilter(
        field_name="size", lookup_expr="gte", help_text="At least N bytes (compressed)."
    )

    class Meta:
        model = Blob
        fields = ["digest", "media_type", "diff_id", "min_images", "min_size"]


class ScanFilter(filters.FilterSet):
    registry = filters.NumberFilter(field_name="registry_id", help_text="Registry id.")
    repository = filters.NumberFilter(field_name="repository_id", help_text="Repository id.")
    status = filters.ChoiceFilter(choices=Scan.Status.choices)
    kind = filters.ChoiceFilter(choices=Scan.Kind.choices)
    parent = filters.NumberFilter(
        field_name="parent_id", help_text="Parent scan id (children of a registry scan)."
    )
    top_level = filters.BooleanFilter(
        field_name="parent", lookup_expr="isnull", help_text="Only scans with no parent."
    )
    trigger = filters.CharFilter(field_name="trigger")

    class Meta:
        model = Scan
        fields = ["registry", "repository", "status", "kind", "parent", "top_level", "trigger"]


# --- backends ---------------------------------------------------------------------------------------------


class AliasOrderingFilter(OrderingFilter):
    """`?ordering=` with public names: a view's `ordering_aliases` maps them to model paths."""

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        aliases = getattr(view, "ordering_aliases", {})
        if not ordering or not aliases:
            return ordering
        return [
            ("-" if term.startswith("-") else "") + aliases.get(term.lstrip("-"), term.lstrip("-"))
            for term in ordering
        ]


BACKENDS = [DjangoFilterBackend, AliasOrderingFilter, SearchFilter]
BACKENDS_NO_SEARCH = [DjangoFilterBackend, AliasOrderingFilter]
