"""What-if jobs: a selection too large for a request, run by a worker, polled, its result kept a while.

`whatif_job_start` (the API) finds or creates the job for an owner and rule, idempotently: the same
rule asked again while its job is unfinished or its result is kept returns that job. An owner has at
most `WHATIF_JOBS_PER_OWNER` unfinished jobs (`TooManyJobs`, 429). Expired jobs are deleted as new ones
are made. `whatif_job_run` (the `whatif_job` task, interactive queue) claims a queued job by a
conditional update, selects the tags, computes, and stores the figures and the first
`WHATIF_JOB_DETAILS` lost manifests and deleted tags; each step moves `phase` and `steps_done`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from analytics.errors import TooManyJobs
from analytics.models import WhatIfJob
from analytics.selectors import whatif

logger = logging.getLogger(__name__)


def rule_data(rule: whatif.TagRule) -> dict:
    """A rule as stored on its job (JSON), in a fixed order so equal rules hash alike."""
    data = asdict(rule)
    data["tags"] = sorted([list(t) for t in rule.tags])
    data["holding_ids"] = sorted(rule.holding_ids)
    return data


def rule_from_data(data: dict) -> whatif.TagRule:
    return whatif.TagRule(
        **{**data, "tags": tuple(tuple(t) for t in data["tags"]), "holding_ids": tuple(data["holding_ids"])}
    )


def impact_data(impact: whatif.DeletionImpact) -> dict:
    """An impact as JSON (the API's shape): tag rows as lists of strings."""
    data = asdict(impact)
    data["deleted_tags"] = [list(map(str, t)) for t in impact.deleted_tags]
    return data


def whatif_job_start(*, rule: whatif.TagRule, owner: str) -> tuple[WhatIfJob, bool]:
    """The owner's job for this rule: the kept one if any, else a new one sent to a worker."""
    whatif.rule_check(rule)
    data = rule_data(rule)
    key = hashlib.sha256(json.dumps([owner, data], sort_keys=True).encode()).hexdigest()
    now = timezone.now()
    with transaction.atomic():
        WhatIfJob.objects.filter(expires_at__lt=now).delete()
        kept = (
            WhatIfJob.objects.filter(key=key, expires_at__gt=now)
            .exclude(status=WhatIfJob.Status.FAILED)
            .order_by("-id")
            .first()
        )
        if kept is not None:
            return kept, False
        # a job whose worker died mid-run would hold a place until it expired: past its time limit it failed
        WhatIfJob.objects.filter(
            status=WhatIfJob.Status.RUNNING,
            started_at__lt=now - timedelta(seconds=settings.WHATIF_JOB_TIMEOUT_SECONDS + 60),
        ).update(status=WhatIfJob.Status.FAILED, phase="failed", error="the worker was lost", finished_at=now)
        # one owner's concurrent requests serialise here, so the bound holds
        cursor = connection.cursor()
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"whatif-job:{owner}"])
        unfinished = WhatIfJob.objects.filter(
            owner=owner, status__in=[WhatIfJob.Status.QUEUED, WhatIfJob.Status.RUNNING]
        ).count()
        if unfinished >= settings.WHATIF_JOBS_PER_OWNER:
            raise TooManyJobs(
                f"{unfinished} what-if jobs of yours are unfinished, the most allowed "
                f"({settings.WHATIF_JOBS_PER_OWNER}); fetch their results first"
            )
        job = WhatIfJob.objects.create(
            key=key,
            owner=owner,
            rule=data,
            created_at=now,
            expires_at=now + timedelta(seconds=settings.WHATIF_JOB_KEEP_SECONDS),
        )
        transaction.on_commit(lambda: current_app.send_task("workers.tasks.whatif_job", args=[job.id]))
    return job, True


def _step(job_id: int, phase: str, done: int, **fields) -> None:
    WhatIfJob.objects.filter(id=job_id).update(phase=phase, steps_done=done, **fields)


def whatif_job_run(*, job_id: int) -> None:
    """Run one queued job (a job already claimed, finished or gone is left alone)."""
    claimed = WhatIfJob.objects.filter(id=job_id, status=WhatIfJob.Status.QUEUED).update(
        status=WhatIfJob.Status.RUNNING, started_at=timezone.now(), phase="selecting tags"
    )
    if not claimed:
        return
    job = WhatIfJob.objects.get(id=job_id)
    # steps: 1 tags selected, 2 computed (the one statement; no finer progress inside it), 3 stored
    limit = settings.WHATIF_JOB_DETAILS
    try:
        rule = rule_from_data(job.rule)
        with connection.cursor() as cursor:  # a job may take long, never forever
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                [f"{settings.WHATIF_JOB_TIMEOUT_SECONDS}s"],
            )
        try:
            if whatif.whole_registry(rule):
                impact = whatif.registry_whole_impact(registry_id=rule.registry_id, limit=limit)
            else:
                now = timezone.now()
                ids = list(whatif.rule_tags(rule=rule, now=now).values_list("id", flat=True))
                _step(job_id, "computing", 1, tags_selected=len(ids))
                impact = whatif.deletion_impact(tag_ids=ids, limit=limit)
                impact = whatif.with_coverage(impact, rule=rule, now=now)
                _step(job_id, "storing the result", 2)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")
        _step(
            job_id,
            "done",
            3,
            status=WhatIfJob.Status.SUCCEEDED,
            tags_selected=impact.tags,
            result=impact_data(impact),
            finished_at=timezone.now(),
        )
    except Exception as exc:  # the job row says why; the worker goes on
        logger.exception("what-if job %s failed", job_id)
        _step(
            job_id,
            "failed",
            job.steps_done,
            status=WhatIfJob.Status.FAILED,
            error=f"{type(exc).__name__}: {exc}"[:2000],
            finished_at=timezone.now(),
        )
