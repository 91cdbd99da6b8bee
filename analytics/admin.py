"""Django admin: registries and repositories are editable; everything a scan wrote is read-only."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import FieldDoesNotExist
from django.db import models, transaction
from django.db.models import Count, Q
from django.db.models.constants import LOOKUP_SEP
from django.template.defaultfilters import filesizeformat, truncatechars
from django.template.response import TemplateResponse

from analytics.engines.services import (
    engine_endpoint_normalise,
    engine_reachable_check,
    engine_scan_start,
    engine_schedule,
    engine_update,
    engine_upsert,
)
from analytics.errors import LayerlensError
from analytics.models import (
    ApiToken,
    Blob,
    Engine,
    EngineHistoryEntry,
    EngineImage,
    EngineImageLayer,
    EngineScan,
    HistoryEntry,
    IndexEntry,
    Manifest,
    ManifestLayer,
    Registry,
    Repository,
    RepositoryManifest,
    Scan,
    ScanError,
    Tag,
    TagEvent,
)
from analytics.registries import (
    KEEP,
    MAX_PEM_CHARS,
    MAX_SECRET_CHARS,
    registry_create,
    registry_reachable_check,
    registry_update,
    registry_url_normalise,
    repository_schedule,
    schedule_check,
    text_check,
)
from analytics.scans.start import scan_create, scan_enqueue
from analytics.tokens import token_create

# --- secrets ----------------------------------------------------------------------------------------------

# Columns holding secrets (ciphertext, password hashes, token digests). The changelist takes any
# `?field__lookup=value` on a model's own columns, so `?password_encrypted__startswith=g` would read a
# secret one prefix at a time: every admin here refuses a lookup that reaches one of these (400), and none
# searches, filters or orders by them.
SECRET_FIELDS: dict[type[models.Model], frozenset[str]] = {
    Registry: frozenset({"password_encrypted"}),
    Engine: frozenset({"tls_key_encrypted"}),
    ApiToken: frozenset({"digest"}),
    get_user_model(): frozenset({"password"}),
}


def lookup_reaches_secret(model: type[models.Model], lookup: str) -> bool:
    """Whether `lookup` (`registry__password_encrypted__startswith`, `pk`, ...) reads a secret column."""
    for part in lookup.split(LOOKUP_SEP):
        try:
            field = model._meta.pk if part == "pk" else model._meta.get_field(part)
        except FieldDoesNotExist:
            return False  # a transform or lookup name: the path to a column ended before it
        if field.name in SECRET_FIELDS.get(model, ()):
            return True
        if not field.is_relation or field.related_model is None:
            return False
        model = field.related_model
    return False


class SecretSafeAdmin(admin.ModelAdmin):
    """The base of every admin on the site (those of auth's models are re-registered below)."""

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        if lookup_reaches_secret(self.model, lookup):
            return False
        return super().lookup_allowed(lookup, value, request)


admin.site.unregister(get_user_model())
admin.site.unregister(Group)


@admin.register(get_user_model())
class LayerlensUserAdmin(SecretSafeAdmin, UserAdmin):
    pass


@admin.register(Group)
class LayerlensGroupAdmin(SecretSafeAdmin, GroupAdmin):
    pass


def _size(value: int | None) -> str:
    return "" if value is None else f"{filesizeformat(value)} ({value:,} B)"


class ReadOnlyAdminMixin:
    """Scanned data is written by ingest only: view it, never add or edit it here."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyAdmin(ReadOnlyAdminMixin, SecretSafeAdmin):
    pass


class ReadOnlyTabularInline(ReadOnlyAdminMixin, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def get_readonly_fields(self, request, obj=None):
        return list(dict.fromkeys([*self.fields, *self.readonly_fields]))


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


# --- registries and repositories (editable) ---------------------------------------------------------------


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
        """The form's values as `registry_update` arguments; an empty password keeps the stored one."""
        data = self.cleaned_data
        password = "" if data.get("clear_password") else data.get("password") or None
        changes = {name: data[name] for name in RegistryForm.Meta.fields if name in data}
        if "next_scan_at" not in self.changed_data:
            changes.pop("next_scan_at", None)  # a changed schedule is due now unless a time is set here
        return {**changes, "password": password}


def _service_check(check, *args, **kwargs):
    """A service's validation as a form error on the field or the form."""
    try:
        return check(*args, **kwargs)
    except LayerlensError as exc:
        raise forms.ValidationError(str(exc)) from exc


@admin.register(Registry)
class RegistryAdmin(SecretSafeAdmin):
    form = RegistryForm
    formfield_overrides = {models.URLField: {"assume_scheme": "http"}}
    list_display = [
        "name",
        "url",
        "username",
        "has_password",
        "tracked",
        "scan_interval",
        "next_scan_at",
        "last_scanned_at",
        "repository_count",
    ]
    list_filter = ["tracked", "insecure"]
    search_fields = ["name", "url"]
    readonly_fields = ["has_password", "last_scanned_at", "created_at"]
    actions = ["scan_now"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(repository_count=Count("repositories"))

    def save_model(self, request, obj: Registry, form: RegistryForm, change: bool) -> None:
        if change:
            registry_update(registry=Registry.objects.get(pk=obj.pk), **form.changes())
        else:
            obj.pk = registry_create(**form.changes()).pk
        obj.refresh_from_db()

    @admin.display(boolean=True, description="password set")
    def has_password(self, obj: Registry) -> bool:
        return obj.has_password

    @admin.display(description="repositories", ordering="repository_count")
    def repository_count(self, obj) -> int:
        return obj.repository_count

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


# --- scanned content (read-only) --------------------------------------------------------------------------


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


# --- Docker Engines ---------------------------------------------------------------------------------------


class EngineForm(forms.ModelForm):
    """An engine's settings; saved by `analytics.engines.services`, which normalises the endpoint,
    checks it against the SSRF policy, keeps the TLS key write-only and starts the schedule."""

    name = forms.CharField(
        required=False, max_length=200, help_text="Display name; left empty, the endpoint."
    )
    tls_key = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: the PEM client key, stored encrypted, never shown. Leave empty to keep it.",
    )

    class Meta:
        model = Engine
        fields = [
            "name",
            "endpoint",
            "tls_ca",
            "tls_cert",
            "allow_internal",
            "pull_tracked",
            "tracked",
            "scan_interval",
        ]

    def clean(self) -> dict:
        data = super().clean()
        if data.get("endpoint") and (
            "endpoint" in self.changed_data or "allow_internal" in self.changed_data
        ):
            _service_check(
                engine_reachable_check,
                endpoint=_service_check(engine_endpoint_normalise, data["endpoint"]),
                allow_internal=data.get("allow_internal", False),
            )
        if "tracked" in data and "scan_interval" in data:
            _service_check(
                schedule_check, tracked=data["tracked"], interval=data["scan_interval"], what="engine"
            )
        return data


@admin.register(Engine)
class EngineAdmin(SecretSafeAdmin):
    form = EngineForm
    list_display = ["name", "endpoint", "server_version", "storage_driver", "tracked", "last_scanned_at"]
    list_filter = ["tracked", "storage_driver"]
    search_fields = ["name", "endpoint", "engine_id"]
    readonly_fields = [
        "engine_id",
        "server_version",
        "os",
        "architecture",
        "storage_driver",
        "last_scanned_at",
    ]
    actions = ["scan_now"]

    def save_model(self, request, obj: Engine, form: EngineForm, change: bool) -> None:
        data = form.cleaned_data
        changes = {
            "name": data["name"] or None,
            "tls_ca": data["tls_ca"],
            "tls_cert": data["tls_cert"],
            "tls_key": data["tls_key"] or None,
            "pull_tracked": data["pull_tracked"],
            "allow_internal": data["allow_internal"],
        }
        with transaction.atomic():
            if change:
                engine = engine_update(
                    engine=Engine.objects.get(pk=obj.pk), endpoint=data["endpoint"], **changes
                )
            else:
                engine = engine_upsert(endpoint=data["endpoint"], **changes)
            if "tracked" in form.changed_data or "scan_interval" in form.changed_data or not change:
                engine_schedule(engine=engine, tracked=data["tracked"], interval=data["scan_interval"])
        obj.pk = engine.pk
        obj.refresh_from_db()

    @admin.action(description="Scan the selected engines now")
    def scan_now(self, request, queryset):
        for engine in queryset:
            engine_scan_start(endpoint=engine.endpoint, trigger="admin")
        self.message_user(request, f"{queryset.count()} engine scan(s) queued", messages.SUCCESS)


class EngineImageLayerInline(ReadOnlyTabularInline):
    model = EngineImageLayer
    extra = 0
    fields = ["position", "layer"]


class EngineHistoryInline(ReadOnlyTabularInline):
    model = EngineHistoryEntry
    extra = 0
    fields = ["position", "row_id", "created", "created_by", "size", "empty_layer"]
    readonly_fields = fields


@admin.register(EngineImage)
class EngineImageAdmin(ReadOnlyAdmin):
    list_display = ["image_id", "engine", "repo_tags", "layer_count", "containers", "present", "last_seen"]
    list_filter = ["present", "engine"]
    search_fields = ["image_id", "repo_tags", "repo_digests"]
    inlines = [EngineImageLayerInline, EngineHistoryInline]


@admin.register(EngineScan)
class EngineScanAdmin(ReadOnlyAdmin):
    list_display = ["id", "engine", "status", "trigger", "images_count", "pulled_count", "created_at"]
    list_filter = ["status", "engine"]
    readonly_fields = [f.name for f in EngineScan._meta.fields]


# --- API tokens -------------------------------------------------------------------------------------------


class ApiTokenForm(forms.ModelForm):
    expires_days = forms.IntegerField(
        required=False, min_value=1, help_text="Lifetime in days; empty: until revoked (deleted)."
    )

    class Meta:
        model = ApiToken
        fields = ["user", "name"]


@admin.register(ApiToken)
class ApiTokenAdmin(SecretSafeAdmin):
    """Made here (the token is shown once, on the page after saving) or by `manage.py token`; deleting
    one revokes it. Only a digest is stored, so a token is never shown again nor edited."""

    form = ApiTokenForm
    list_display = ["name", "user", "starts_with", "created", "expiry"]
    list_select_related = ["user"]
    search_fields = ["name", "user__username"]
    autocomplete_fields = ["user"]
    fields = ["user", "name", "expires_days"]

    def get_fields(self, request, obj=None):
        return self.fields if obj is None else ["user", "name", "starts_with", "created", "expiry"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["user", "name", "starts_with", "created", "expiry"]

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="starts with")
    def starts_with(self, obj: ApiToken) -> str:
        return f"{obj.token_key}..."

    def save_model(self, request, obj: ApiToken, form: ApiTokenForm, change: bool) -> None:
        days = form.cleaned_data.get("expires_days")
        row, token = token_create(
            user=form.cleaned_data["user"],
            name=form.cleaned_data["name"],
            expires_in=timedelta(days=days) if days else None,
        )
        obj.digest, obj.token_key, obj.created, obj.expiry = (
            row.digest,
            row.token_key,
            row.created,
            row.expiry,
        )
        request.layerlens_new_token = token

    def response_add(self, request, obj: ApiToken, post_url_continue=None):
        # The token on this page only: not in a message, which a cookie would carry.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "API token created",
            "row": obj,
            "token": request.layerlens_new_token,
        }
        return TemplateResponse(request, "admin/analytics/apitoken/created.html", context)
