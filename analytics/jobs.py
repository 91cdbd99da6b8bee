"""What-if jobs: a selection too large for a request, run by a worker, polled, its result kept a while.

A job is a what-if rule's or a cleanup policy's preview (a scope holding more than a request previews).
`whatif_job_start` and `policy_job_start` (the API) find or create the job for an owner and rule or
policy, idempotently: the same one asked again while its job is unfinished or its result is kept returns
that job. An owner has at
most `WHATIF_JOBS_PER_OWNER` unfinished jobs (`TooManyJobs`, 429). Expired jobs are deleted as new ones
are made. `whatif_job_run` (the `whatif_job` task, interactive queue) claims a queued job by a
conditional update, selects the tags, computes, and stores the figures and the first
`WHATIF_JOB_DETAILS` lost manifests and deleted tags (a policy's: its preview, its lists cut as long);
each step moves `phase` and `steps_done`. A refusal the computation names (a policy reading pulls
Layerlens does not count, say) fails the job with that sentence.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from analytics.errors import LayerlensError, TooManyJobs
from analytics.models import WhatIfJob
from analytics.policies.document import document_read
from analytics.policies.preview import policy_parse, policy_preview, preview_answer
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
    return _job_start(key_data=data, owner=owner, fields={"rule": data})


def policy_job_start(
    *,
    text: str,
    format: str | None,
    registry_id: int,
    namespace: str | None,
    repository_id: int | None,
    owner: str,
) -> tuple[WhatIfJob, bool]:
    """The owner's job previewing this policy over the scope: the kept one if any, else a new one sent to
    a worker. The policy is parsed first (InvalidPolicy: no job); the job stores the format it was read in."""
    data = {
        "format": policy_parse(text, format=format).format,
        "text": text,
        "registry_id": registry_id,
        "namespace": namespace,
        "repository_id": repository_id,
    }
    # keyed on the document, not its text: the same policy pasted with other spacing is the same job
    key_data = {**data, "text": document_read(text)}
    return _job_start(key_data={"policy": key_data}, owner=owner, fields={"policy": data})


def _job_start(*, key_data: dict, owner: str, fields: dict) -> tuple[WhatIfJob, bool]:
    key = hashlib.sha256(json.dumps([owner, key_data], sort_keys=True).encode()).hexdigest()
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
            **fields,
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
    # steps: 1 tags selected (a policy: previewing), 2 computed (one statement, no finer progress), 3 stored
    limit = settings.WHATIF_JOB_DETAILS
    try:
        with connection.cursor() as cursor:  # a job may take long, never forever
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                [f"{settings.WHATIF_JOB_TIMEOUT_SECONDS}s"],
            )
        try:
            done = _policy_run(job, limit) if job.policy is not None else _rule_run(job, limit)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET statement_timeout")
        _step(job_id, "done", 3, status=WhatIfJob.Status.SUCCEEDED, finished_at=timezone.now(), **done)
    except LayerlensError as exc:  # refused, not broken: the sentence says why and what to do
        _step(
            job_id,
            "failed",
            job.steps_done,
            status=WhatIfJob.Status.FAILED,
            error=str(exc)[:2000],
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


def _rule_run(job: WhatIfJob, limit: int) -> dict:
    """A rule job's figures and lists (a whole registry: read off the maintained figures)."""
    rule = rule_from_data(job.rule)
    if whatif.whole_registry(rule):
        impact = whatif.registry_whole_impact(registry_id=rule.registry_id, limit=limit)
    else:
        now = timezone.now()
        ids = list(whatif.rule_tags(rule=rule, now=now).values_list("id", flat=True))
        _step(job.id, "computing", 1, tags_selected=len(ids))
        impact = whatif.deletion_impact(tag_ids=ids, limit=limit, registry_id=rule.registry_id)
        impact = whatif.with_coverage(impact, rule=rule, now=now)
        _step(job.id, "storing the result", 2)
    return {"tags_selected": impact.tags, "result": impact_data(impact)}


def _policy_run(job: WhatIfJob, limit: int) -> dict:
    """A policy job's preview (its selection and pricing are one step: no finer progress inside)."""
    data = job.policy
    _step(job.id, "previewing the policy", 0)
    preview = policy_preview(
        policy=policy_parse(data["text"], format=data["format"]),
        registry_id=data["registry_id"],
        namespace=data["namespace"],
        repository_id=data["repository_id"],
        limit=limit,
    )
    _step(job.id, "storing the result", 2)
    # as JSON: the preview's dates as ISO 8601 text
    answer = json.loads(json.dumps(preview_answer(preview, limit=limit), cls=DjangoJSONEncoder))
    return {"tags_selected": preview.impact.tags, "result": answer}
