"""Computations too large for a request, run by a worker: a row to poll, its progress and its result."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class WhatIfJob(models.Model):
    """A what-if deletion over a selection too large to answer in a request (`analytics.jobs`): a
    what-if rule's (`rule`), or a cleanup policy's preview (`policy`: its format, text and scope).

    `key` is the hash of the owner and the normalised rule or policy: asking again while a job for the
    same one is unfinished or its result is kept returns that job. `owner` is `user:<id>` or `address:<ip>`;
    the number of unfinished jobs per owner is bounded. The result (the figures, and at most
    `WHATIF_JOB_DETAILS` lost manifests and deleted tags) is kept until `expires_at`.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    key = models.CharField(max_length=64)
    owner = models.CharField(max_length=200)
    rule = models.JSONField(null=True, blank=True)
    # {"format", "text", "registry_id", "namespace", "repository_id"}: the policy as parsed, its scope by id
    policy = models.JSONField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    phase = models.CharField(max_length=64, default="queued")  # what the worker is doing now
    steps_done = models.PositiveSmallIntegerField(default=0)
    steps_total = models.PositiveSmallIntegerField(default=3)
    tags_selected = models.BigIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(rule__isnull=True, policy__isnull=False)
                | Q(rule__isnull=False, policy__isnull=True),
                name="whatif_job_rule_or_policy",
            )
        ]
        indexes = [
            models.Index(fields=["key", "expires_at"], name="whatif_job_key"),
            models.Index(
                fields=["owner"], name="whatif_job_unfinished", condition=Q(status__in=["queued", "running"])
            ),
            models.Index(fields=["expires_at"], name="whatif_job_expiry"),
        ]
