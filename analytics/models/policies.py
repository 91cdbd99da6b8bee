"""Saved cleanup policies and the series of what each would reclaim, evaluated after each change."""

from __future__ import annotations

from django.db import models


class CleanupPolicy(models.Model):
    """A cleanup policy saved for a registry, in its own format and text (kept as given, so the user's
    document comes back unchanged), over the registry or a namespace or repository of it.

    Written through `analytics.policies.saved` only: the text is parsed there (`policy_parse`) and a
    policy that does not parse is never saved. `revision` moves when what the policy selects may change
    (text, format, scope), so an evaluation is keyed on it with the registry's content version."""

    class Format(models.TextChoices):
        ECR = "ecr", "AWS ECR lifecycle policy"
        GITLAB = "gitlab", "GitLab cleanup policy"
        HARBOR = "harbor", "Harbor tag retention policy"
        LAYERLENS = "layerlens", "Layerlens what-if rule"

    registry = models.ForeignKey("analytics.Registry", on_delete=models.CASCADE, related_name="policies")
    name = models.CharField(max_length=100)
    format = models.CharField(max_length=16, choices=Format.choices)
    text = models.TextField(help_text="The policy's document, as given.")
    # A repository by name, not by row: a repository the registry dropped leaves the policy in place
    # (its evaluations say so) instead of deleting it or widening it to the whole registry.
    namespace = models.CharField(max_length=255, blank=True, default="")
    repository = models.CharField(max_length=255, blank=True, default="")
    enabled = models.BooleanField(default=True, help_text="Evaluated after each scan or batch of events.")
    revision = models.PositiveIntegerField(default=1, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registry", "name"], name="cleanup_policy_name_per_registry")
        ]
        verbose_name_plural = "cleanup policies"

    def __str__(self) -> str:
        return self.name


class PolicyEvaluation(models.Model):
    """One point of a saved policy's series: what deleting its selection, then collecting garbage,
    would free, at the registry's content version. One point per (policy, revision, content version): a
    retried evaluation finds it there; one that failed (`error`) may be replaced by a later success."""

    policy = models.ForeignKey(CleanupPolicy, on_delete=models.CASCADE, related_name="evaluations")
    at = models.DateTimeField()
    revision = models.PositiveIntegerField()
    content_version = models.BigIntegerField()  # the registry's `ScopeFigures.content_version`; 0: none yet
    freed_bytes = models.BigIntegerField(null=True, blank=True)
    tags_removed = models.IntegerField(null=True, blank=True)
    manifests_freed = models.IntegerField(null=True, blank=True)
    blobs_freed = models.IntegerField(null=True, blank=True)
    untagged_expired = models.IntegerField(null=True, blank=True)
    # where the push times the selection read came from ("events", "scans", "events and scans", "none
    # read"); empty when the format reads none of its own (the Layerlens rule) or the evaluation failed
    push_times = models.CharField(max_length=32, blank=True, default="")
    seconds = models.FloatField(default=0.0)  # how long the evaluation took
    error = models.TextField(blank=True, default="")  # why it was refused (pulls not counted, too long)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "revision", "content_version"], name="policy_evaluation_once"
            )
        ]
        indexes = [models.Index(fields=["policy", "-at", "-id"], name="policy_evaluation_latest")]
