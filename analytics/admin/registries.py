"""Registries and repositories: editable, saved through `analytics.registries`; both can be scanned now."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import Count, OuterRef, Q, Subquery

from analytics.admin.base import SecretSafeAdmin, _service_check
from analytics.models import Registry, Repository, ScopeFigures
from analytics.registries import (
    KEEP,
    MAX_PEM_CHARS,
    MAX_SECRET_CHARS,
    events_secret_check,
    registry_create,
    registry_reachable_check,
    registry_update,
    registry_url_normalise,
    repository_schedule,
    schedule_check,
    text_check,
)
from analytics.scans.start import scan_create, scan_enqueue


def _scan_now(
    modeladmin: admin.ModelAdmin, request, targets: list[tuple[Registry, Repository | None]]
) -> None:
    for registry, repository in targets:
        with transaction.atomic():
            scan = scan_create(registry=registry, repository=repository, trigger="admin")
            scan_enqueue(scan)
        modeladmin.message_user(
            request, f"Scan {scan.id} of {repository or registry} queued.", level=messages.SUCCESS
        )


def _registry_formfield(db_field, **kwargs):
    if isinstance(db_field, models.URLField):
        kwargs.setdefault("assume_scheme", "http")  # registries on loopback are mostly plain HTTP
    return db_field.formfield(**kwargs)


class RegistryForm(forms.ModelForm):
    """The registry's settings; saved by `analytics.registries`, which normalises the URL, keeps the
    secret write-only and starts the schedule."""

    password = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: stored encrypted, never shown. Leave empty to keep the current one.",
    )
    clear_password = forms.BooleanField(required=False, help_text="Remove the stored password.")
    events_secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: the secret the registry sends its events with (Authorization: Bearer "
        "&lt;secret&gt;); stored encrypted, never shown. Setting one makes the registry followed by events; "
        "`manage.py registry events-config ID` prints what to paste into its configuration. "
        "Leave empty to keep the current one.",
    )
    clear_events_secret = forms.BooleanField(
        required=False, help_text="Remove the events secret: the registry is no longer followed by events."
    )

    class Meta:
        model = Registry
        fields = [
            "name",
            "url",
            "username",
            "insecure",
            "ca_bundle",
            "tracked",
            "scan_interval",
            "next_scan_at",
            "max_concurrency",
            "max_requests_per_second",
        ]
        formfield_callback = _registry_formfield

    def clean_url(self) -> str:
        return _service_check(registry_url_normalise, self.cleaned_data["url"])

    def clean_events_secret(self) -> str:
        secret = self.cleaned_data["events_secret"]
        _service_check(events_secret_check, secret)
        return secret

    def clean(self) -> dict:
        data = super().clean()
        if "tracked" in data and "scan_interval" in data:
            _service_check(schedule_check, tracked=data["tracked"], interval=data["scan_interval"])
        for name, most in (("ca_bundle", MAX_PEM_CHARS), ("password", MAX_SECRET_CHARS)):
            _service_check(text_check, name, data.get(name), most)
        if data.get("url") and "url" in self.changed_data:
            _service_check(
                registry_reachable_check, url=data["url"], allow_internal=self.instance.allow_internal
            )
        return data

    def changes(self) -> dict[str, object]:
        """The form's values as `registry_update` arguments; an empty password or events secret keeps
        the stored one."""
        data = self.cleaned_data
        password = "" if data.get("clear_password") else data.get("password") or None
        events_secret = "" if data.get("clear_events_secret") else data.get("events_secret") or None
        changes = {name: data[name] for name in RegistryForm.Meta.fields if name in data}
        if "next_scan_at" not in self.changed_data:
            changes.pop("next_scan_at", None)  # a changed schedule is due now unless a time is set here
        return {**changes, "password": password, "events_secret": events_secret}


@admin.register(Registry)
class RegistryAdmin(SecretSafeAdmin):
    form = RegistryForm
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}
    list_display = [
        "name",
        "url",
        "username",
        "has_password",
        "followed",
        "tracked",
        "scan_interval",
        "next_scan_at",
        "last_scanned_at",
        "last_event_at",
        "repository_count",
        "image_count",
        "manifest_count",
        "index_count",
    ]
    list_filter = ["tracked", "insecure"]
    search_fields = ["name", "url"]
    readonly_fields = ["has_password", "followed", "last_scanned_at", "last_event_at", "created_at"]
    actions = ["scan_now"]

    def get_queryset(self, request):
        # the registry's summary figures (the API's summary/ and `manage.py report`): one definition
        figures = ScopeFigures.objects.filter(registry=OuterRef("pk"), repository=None)
        return (
            super()
            .get_queryset(request)
            .annotate(
                repository_count=Subquery(figures.values("repositories")[:1]),
                image_count=Subquery(figures.values("images")[:1]),
                manifest_count=Subquery(figures.values("manifests")[:1]),
                index_count=Subquery(figures.values("indexes")[:1]),
            )
        )

    def save_model(self, request, obj: Registry, form: RegistryForm, change: bool) -> None:
        if change:
            registry_update(registry=Registry.objects.get(pk=obj.pk), **form.changes())
        else:
            obj.pk = registry_create(**form.changes()).pk
        obj.refresh_from_db()

    @admin.display(boolean=True, description="password set")
    def has_password(self, obj: Registry) -> bool:
        return obj.has_password

    @admin.display(boolean=True, description="followed by events")
    def followed(self, obj: Registry) -> bool:
        return obj.followed

    @admin.display(description="repositories", ordering="repository_count")
    def repository_count(self, obj) -> int:
        return obj.repository_count or 0

    @admin.display(description="images", ordering="image_count")
    def image_count(self, obj) -> int:
        return obj.image_count or 0

    @admin.display(description="manifests", ordering="manifest_count")
    def manifest_count(self, obj) -> int:
        return obj.manifest_count or 0

    @admin.display(description="indexes", ordering="index_count")
    def index_count(self, obj) -> int:
        return obj.index_count or 0

    @admin.action(description="Scan now")
    def scan_now(self, request, queryset):
        _scan_now(self, request, [(registry, None) for registry in queryset])


class RepositoryForm(forms.ModelForm):
    """Tracking a repository; saved by `analytics.registries.repository_schedule`."""

    class Meta:
        model = Repository
        fields = ["tracked", "scan_interval", "next_scan_at"]

    def clean(self) -> dict:
        data = super().clean()
        if "tracked" in data and "scan_interval" in data:
            _service_check(schedule_check, tracked=data["tracked"], interval=data["scan_interval"])
        if data.get("url") and "url" in self.changed_data:
            _service_check(
                registry_reachable_check, url=data["url"], allow_internal=self.instance.allow_internal
            )
        return data


@admin.register(Repository)
class RepositoryAdmin(SecretSafeAdmin):
    form = RepositoryForm
    list_display = [
        "name",
        "registry",
        "tracked",
        "scan_interval",
        "last_scanned_at",
        "image_count",
        "tag_count",
    ]
    list_filter = ["registry", "tracked"]
    search_fields = ["name", "tags__name"]
    list_select_related = ["registry"]
    readonly_fields = ["registry", "name", "last_scanned_at", "scan_lease_until", "first_seen"]
    fields = [
        "registry",
        "name",
        "tracked",
        "scan_interval",
        "next_scan_at",
        "last_scanned_at",
        "scan_lease_until",
        "first_seen",
    ]
    actions = ["scan_now"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                image_count=Count(
                    "held_manifests",
                    filter=Q(held_manifests__present=True, held_manifests__manifest__kind="image"),
                    distinct=True,
                ),
                tag_count=Count("tags", filter=Q(tags__removed_at=None), distinct=True),
            )
        )

    def has_add_permission(self, request) -> bool:
        return False  # repositories are found by scans

    def save_model(self, request, obj: Repository, form: RepositoryForm, change: bool) -> None:
        data = form.cleaned_data
        repository_schedule(
            repository=Repository.objects.get(pk=obj.pk),
            tracked=data["tracked"],
            interval=data["scan_interval"],
            next_scan_at=data["next_scan_at"] if "next_scan_at" in form.changed_data else KEEP,
        )
        obj.refresh_from_db()

    @admin.display(description="images", ordering="image_count")
    def image_count(self, obj) -> int:
        return obj.image_count

    @admin.display(description="tags", ordering="tag_count")
    def tag_count(self, obj) -> int:
        return obj.tag_count

    @admin.action(description="Scan now")
    def scan_now(self, request, queryset):
        _scan_now(self, request, [(repo.registry, repo) for repo in queryset.select_related("registry")])
