"""Scanned content (blobs, manifests, layers, index entries, holdings, tags, history): read-only."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import Count, Q
from django.template.defaultfilters import truncatechars

from analytics.admin.base import ReadOnlyAdmin, ReadOnlyTabularInline, _size
from analytics.models import (
    Blob,
    HistoryEntry,
    IndexEntry,
    Manifest,
    ManifestLayer,
    RepositoryManifest,
    Tag,
    TagEvent,
)


class HistoryEntryInline(ReadOnlyTabularInline):
    model = HistoryEntry
    fields = ["position", "created", "created_by", "empty_layer", "layer_position", "comment"]
    show_change_link = False


@admin.register(Blob)
class BlobAdmin(ReadOnlyAdmin):
    list_display = ["digest", "media_type", "stored_size", "unpacked_size", "diff_id", "manifest_count"]
    list_filter = ["media_type"]
    search_fields = ["digest", "diff_id"]
    inlines = [HistoryEntryInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(manifest_count=Count("manifest_layers__manifest", distinct=True))
        )

    @admin.display(description="size", ordering="size")
    def stored_size(self, obj: Blob) -> str:
        return _size(obj.size)

    @admin.display(description="uncompressed", ordering="uncompressed_size")
    def unpacked_size(self, obj: Blob) -> str:
        return _size(obj.uncompressed_size)

    @admin.display(description="in manifests", ordering="manifest_count")
    def manifest_count(self, obj) -> int:
        return obj.manifest_count


class ManifestLayerInline(ReadOnlyTabularInline):
    model = ManifestLayer
    fields = ["position", "blob", "layer_size"]
    readonly_fields = ["layer_size"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("blob")

    @admin.display(description="size")
    def layer_size(self, obj: ManifestLayer) -> str:
        return _size(obj.blob.size)


class IndexEntryInline(ReadOnlyTabularInline):
    model = IndexEntry
    fk_name = "index"
    fields = ["position", "child", "os", "architecture", "variant"]


@admin.register(Manifest)
class ManifestAdmin(ReadOnlyAdmin):
    list_display = [
        "digest",
        "kind",
        "platform",
        "created",
        "layer_count",
        "layers_total",
        "repository_count",
        "media_type",
    ]
    list_filter = ["kind", "media_type", "os", "architecture"]
    search_fields = ["digest", "holdings__repository__name", "tags__name", "manifest_layers__blob__digest"]
    inlines = [ManifestLayerInline, IndexEntryInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(repository_count=Count("holdings", filter=Q(holdings__present=True), distinct=True))
        )

    @admin.display(description="layers size", ordering="layers_size")
    def layers_total(self, obj: Manifest) -> str:
        return _size(obj.layers_size)

    @admin.display(description="repositories", ordering="repository_count")
    def repository_count(self, obj) -> int:
        return obj.repository_count


@admin.register(ManifestLayer)
class ManifestLayerAdmin(ReadOnlyAdmin):
    list_display = ["manifest", "position", "blob", "layer_size"]
    list_select_related = ["manifest", "blob"]
    list_filter = ["blob__media_type"]
    search_fields = ["manifest__digest", "blob__digest"]

    @admin.display(description="size", ordering="blob__size")
    def layer_size(self, obj: ManifestLayer) -> str:
        return _size(obj.blob.size)


@admin.register(IndexEntry)
class IndexEntryAdmin(ReadOnlyAdmin):
    list_display = ["index", "position", "child", "os", "architecture", "variant"]
    list_select_related = ["index", "child"]
    list_filter = ["os", "architecture"]
    search_fields = ["index__digest", "child__digest"]


@admin.register(RepositoryManifest)
class RepositoryManifestAdmin(ReadOnlyAdmin):
    list_display = [
        "repository",
        "manifest",
        "kind",
        "platform",
        "layers_total",
        "present",
        "first_seen",
        "last_seen",
    ]
    list_select_related = ["repository__registry", "manifest"]
    list_filter = [
        "present",
        "repository__registry",
        "manifest__kind",
        "manifest__os",
        "manifest__architecture",
    ]
    search_fields = ["repository__name", "manifest__digest", "manifest__tags__name"]

    @admin.display(ordering="manifest__kind")
    def kind(self, obj: RepositoryManifest) -> str:
        return obj.manifest.kind

    @admin.display()
    def platform(self, obj: RepositoryManifest) -> str:
        return obj.manifest.platform

    @admin.display(description="layers size", ordering="manifest__layers_size")
    def layers_total(self, obj: RepositoryManifest) -> str:
        return _size(obj.manifest.layers_size)


class TagEventInline(ReadOnlyTabularInline):
    model = TagEvent
    fields = ["seen_at", "old_digest", "new_digest", "scan"]
    show_change_link = False


class RemovedFilter(admin.SimpleListFilter):
    title = "removed"
    parameter_name = "removed"

    def lookups(self, request, model_admin):
        return [("no", "current"), ("yes", "removed")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(removed_at=None)
        if self.value() == "yes":
            return queryset.exclude(removed_at=None)
        return queryset


@admin.register(Tag)
class TagAdmin(ReadOnlyAdmin):
    list_display = ["name", "repository", "manifest", "first_seen", "last_seen", "removed_at"]
    list_select_related = ["repository__registry", "manifest"]
    list_filter = [RemovedFilter, "repository__registry"]
    search_fields = ["name", "repository__name", "manifest__digest"]
    inlines = [TagEventInline]


@admin.register(TagEvent)
class TagEventAdmin(ReadOnlyAdmin):
    list_display = ["seen_at", "tag", "old_digest", "new_digest", "scan"]
    list_select_related = ["tag__repository__registry"]
    list_filter = ["tag__repository__registry"]
    search_fields = ["tag__name", "tag__repository__name", "old_digest", "new_digest"]


@admin.register(HistoryEntry)
class HistoryEntryAdmin(ReadOnlyAdmin):
    list_display = ["config", "position", "created", "short_created_by", "empty_layer", "layer_position"]
    list_select_related = ["config"]
    list_filter = ["empty_layer"]
    search_fields = ["config__digest", "created_by"]

    @admin.display(description="created by")
    def short_created_by(self, obj: HistoryEntry) -> str:
        return truncatechars(obj.created_by, 100)
