"""Registries and their repositories: where to scan, with what credentials and how often."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from analytics.infra.crypto import decrypt_secret, encrypt_secret

# Upper bounds of a registry's own limits: past these a limit is no limit, and likely a typo.
REGISTRY_MAX_CONCURRENCY = 256
REGISTRY_MAX_RATE = 10_000.0


class Registry(models.Model):
    name = models.CharField(max_length=200, unique=True, help_text="Display name; defaults to host:port.")
    url = models.URLField(max_length=500, unique=True, help_text="Base URL, e.g. http://127.0.0.1:5000")
    username = models.CharField(max_length=200, blank=True)
    password_encrypted = models.TextField(blank=True, editable=False)
    insecure = models.BooleanField(default=False, help_text="Skip TLS certificate verification.")
    ca_bundle = models.TextField(blank=True, help_text="PEM CA certificates to trust for this registry.")
    identity_token = models.BooleanField(
        default=False, help_text="The stored secret is an OAuth2 identity (refresh) token, not a password."
    )
    allow_internal = models.BooleanField(
        default=False,
        help_text="Allow loopback, private and link-local addresses (an operator's decision; staff only).",
    )
    tracked = models.BooleanField(default=False, help_text="Scanned on schedule by the beat task.")
    scan_interval = models.DurationField(null=True, blank=True)
    next_scan_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_scanned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A registry with an events secret is followed by events: it sends its notifications or webhooks to
    # POST /api/v1/registries/{id}/events/ with `Authorization: Bearer <secret>`.
    events_secret_encrypted = models.TextField(blank=True, editable=False)
    last_event_at = models.DateTimeField(
        null=True, blank=True, help_text="When an applied event last changed what is recorded of it."
    )
    # Pull counts (ManifestPulls) exist only from the events the registry sent: "not pulled in N days" says
    # something only when this is at least N days ago (analytics/selectors/pulls.py).
    pulls_counted_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Pulls are counted from this time on: the oldest event handed to pull counting.",
    )
    # Politeness for this registry, shared by every worker (analytics/infra/politeness.py); null keeps the
    # deployment's REGISTRY_CONCURRENCY_LIMIT / REGISTRY_RATE_LIMIT. Bounded so a typo cannot flood it.
    max_concurrency = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(REGISTRY_MAX_CONCURRENCY)],
        help_text="Requests in flight at once to this registry, all workers together (empty: the default).",
    )
    max_requests_per_second = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.1), MaxValueValidator(REGISTRY_MAX_RATE)],
        help_text="Requests per second to this registry, all workers together (empty: the default).",
    )

    class Meta:
        verbose_name_plural = "registries"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_concurrency__isnull=True)
                | Q(max_concurrency__gte=1, max_concurrency__lte=REGISTRY_MAX_CONCURRENCY),
                name="registry_max_concurrency_range",
            ),
            models.CheckConstraint(
                condition=Q(max_requests_per_second__isnull=True)
                | Q(max_requests_per_second__gte=0.1, max_requests_per_second__lte=REGISTRY_MAX_RATE),
                name="registry_max_requests_per_second_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[-1].rstrip("/")

    @property
    def has_password(self) -> bool:
        return bool(self.password_encrypted)

    def set_password(self, raw: str | None) -> None:
        self.password_encrypted = encrypt_secret(raw) if raw else ""

    def get_password(self) -> str | None:
        return decrypt_secret(self.password_encrypted) if self.password_encrypted else None

    @property
    def followed(self) -> bool:
        """Whether the registry announces its changes to Layerlens (it has an events secret)."""
        return bool(self.events_secret_encrypted)

    def set_events_secret(self, raw: str | None) -> None:
        self.events_secret_encrypted = encrypt_secret(raw) if raw else ""

    def get_events_secret(self) -> str | None:
        return decrypt_secret(self.events_secret_encrypted) if self.events_secret_encrypted else None


class Repository(models.Model):
    registry = models.ForeignKey(Registry, on_delete=models.CASCADE, related_name="repositories")
    name = models.CharField(max_length=255)
    tracked = models.BooleanField(default=False)
    scan_interval = models.DurationField(null=True, blank=True)
    next_scan_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_scanned_at = models.DateTimeField(null=True, blank=True)
    # A lease, not a flag: a worker that dies mid-scan leaves a lease that simply expires.
    scan_lease_until = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "repositories"
        ordering = ["registry_id", "name"]
        constraints = [models.UniqueConstraint(fields=["registry", "name"], name="repository_unique_name")]
        indexes = [
            # lists over every registry walk repositories in name order (cold images' keyset pages): an
            # index range, not a sort of every repository before the first page
            models.Index(fields=["name", "id"], name="repository_name_id"),
        ]

    def __str__(self) -> str:
        return f"{self.registry.host}/{self.name}"
