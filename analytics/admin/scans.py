"""Scans and their errors: read-only, except that a superuser may prune old scans."""

from __future__ import annotations

from django.contrib import admin
from django.template.defaultfilters import truncatechars

from analytics.admin.base import ReadOnlyAdmin, ReadOnlyTabularInline
from analytics.models import Scan, ScanError


class ScanErrorInline(ReadOnlyTabularInline):
    model = ScanError
    fields = ["repository", "reference", "kind", "message", "created_at"]
    show_change_link = False


class ScanChildInline(ReadOnlyTabularInline):
    model = Scan
    fk_name = "parent"
    fields = [
        "repository",
        "status",
        "started_at",
        "finished_at",
        "tags_count",
        "images_count",
        "errors_count",
    ]
    verbose_name_plural = "repository scans"


@admin.register(Scan)
class ScanAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "kind",
        "target",
        "status",
        "trigger",
        "created_at",
        "progress",
        "tags_progress",
        "images_count",
        "new_manifests_count",
        "errors_count",
    ]
    list_select_related = ["registry", "repository"]
    list_filter = ["status", "kind", "trigger", "registry"]
    search_fields = ["registry__name", "registry__url", "repository__name", "tag"]
    inlines = [ScanErrorInline, ScanChildInline]

    def has_delete_permission(self, request, obj=None) -> bool:
        return bool(request.user.is_superuser)  # old scans may be pruned; they own nothing else

    @admin.display()
    def target(self, obj: Scan) -> str:
        target = str(obj.repository or obj.registry)
        return f"{target}:{obj.tag}" if obj.tag else target

    @admin.display(description="repositories")
    def progress(self, obj: Scan) -> str:
        return f"{obj.repositories_done}/{obj.repositories_total}"

    @admin.display(description="tags read")
    def tags_progress(self, obj: Scan) -> str:
        # tags_total counts the tags listed so far: repositories not yet started add theirs later.
        return f"{obj.tags_done}/{obj.tags_total}" + ("" if obj.is_finished else "+")


@admin.register(ScanError)
class ScanErrorAdmin(ReadOnlyAdmin):
    list_display = ["scan", "repository", "reference", "kind", "short_message", "created_at"]
    list_select_related = ["scan__registry", "scan__repository"]
    list_filter = ["kind"]
    search_fields = ["repository", "reference", "message"]

    @admin.display(description="message")
    def short_message(self, obj: ScanError) -> str:
        return truncatechars(obj.message, 120)
