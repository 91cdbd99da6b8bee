"""Insights: partners, lineage, stale bases, what-if deletion, cold images, missed savings, build
history, largest layers, content in several registries, trends and growth. Each view calls one
selector."""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial

from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.response import Response
from rest_framework.views import APIView

from analytics import jobs
from analytics.api import params
from analytics.api.caching import SnapshotCachedRead
from analytics.api.csv import CSVListMixin, serializer_header
from analytics.api.paging import KeysetPage, OffsetPage
from analytics.api.params import (
    KEYSET_PARAMETERS,
    PAGE_PARAMETERS,
    SCOPE_PARAMETERS,
    UNTAGGED,
    CheckedQuery,
    scope_from_request,
)
from analytics.api.permissions import ComputeForReaders
from analytics.api.serializers import insights as s
from analytics.api.serializers.common import SCOPE_ERRORS
from analytics.api.throttles import EXPENSIVE
from analytics.errors import InvalidRequest, NotFound
from analytics.infra.addresses import client_address
from analytics.ingest.answers import answers_refresh
from analytics.models import Repository, RepositoryManifest, WhatIfJob
from analytics.policies.preview import policy_parse, policy_preview, preview_answer, scope_check
from analytics.selectors import content, pulls, whatif
from analytics.selectors.answers import MISSED_SAVINGS, STALE_BASES, answers_stale
from analytics.selectors.cold import cold_answer, cold_images
from analytics.selectors.images import image_get_queryset
from analytics.selectors.lineage import image_derived, image_lineage, stale_bases
from analytics.selectors.scope import Scope, scope_resolve
from analytics.selectors.trends import repository_growth, snapshot_series


def paged_schema(page_serializer, *, parameters=(), **kwargs):
    """An uncounted offset page of a list selector, documented as such."""
    return extend_schema(
        parameters=[*parameters, *PAGE_PARAMETERS], responses={200: page_serializer, **SCOPE_ERRORS}, **kwargs
    )


def _image(pk: int) -> RepositoryManifest:
    try:
        return image_get_queryset().get(id=pk)
    except RepositoryManifest.DoesNotExist as exc:
        raise NotFound(f"no image {pk}") from exc


# --- partners and lineage ---------------------------------------------------------------------------------


class ImagePartnersView(SnapshotCachedRead, CheckedQuery, APIView):
    @extend_schema(
        summary="The images sharing the most bytes with this one (within its registry unless scoped)",
        parameters=[
            *SCOPE_PARAMETERS,
            OpenApiParameter(
                "limit", OpenApiTypes.INT, required=False, description="Top N (default 10, at most 1000)."
            ),
        ],
        responses={200: s.PartnerSerializer(many=True), **SCOPE_ERRORS},
    )
    def get(self, request, pk: int):
        image = _image(pk)
        scope = scope_from_request(request)
        if scope.registry_id is None and scope.repository_id is None and not scope.namespace:
            scope = Scope(**{**asdict(scope), "registry_id": image.repository.registry_id})
        limit = params.limit(request, default=10)
        rows = content.image_partners(
            holding_id=image.id, manifest_id=image.manifest_id, scope=scope, limit=limit
        )
        return Response(s.PartnerSerializer(rows, many=True).data)


class ImageLineageView(SnapshotCachedRead, CheckedQuery, APIView):
    @extend_schema(
        summary="The image's base (longest ordered layer prefix that is another image) and its chain",
        parameters=[UNTAGGED],
        responses={200: s.LineageSerializer, **SCOPE_ERRORS},
    )
    def get(self, request, pk: int):
        untagged = params.boolean(request, "include_untagged")
        chain = image_lineage(holding=_image(pk), include_untagged=untagged)
        data = {"base": chain[0] if chain else None, "chain": chain, "tagged_only": not untagged}
        return Response(s.LineageSerializer(data).data)


class ImageDerivedView(SnapshotCachedRead, CheckedQuery, APIView):
    """Keyset pages (a hot base has 100,000 derived images): fewest extra layers first, then manifest
    id, then image id; `next` carries `after=`, and no count is given."""

    @extend_schema(
        summary="Images built on this one: their layers start with all of its layers (keyset pages, "
        "no count)",
        parameters=[UNTAGGED, *KEYSET_PARAMETERS],
        responses={200: s.DerivedImagePageSerializer, **SCOPE_ERRORS},
    )
    def get(self, request, pk: int):
        if "page" in request.query_params:
            raise InvalidRequest("page: this list pages by key; follow `next` (`after=`)")
        page = KeysetPage(request, parts=3)
        untagged = params.boolean(request, "include_untagged")
        fetch = partial(image_derived, holding=_image(pk), include_untagged=untagged)
        if page.whole_list:
            return page.stream(fetch, self.rows, header=serializer_header(s.DerivedImageSerializer()))
        found, nxt = fetch(after=page.after, limit=page.size)
        return page.response(self.rows(found), nxt, offset_shaped=True)

    @staticmethod
    def rows(found: list) -> list[dict]:
        return s.DerivedImageSerializer(found, many=True).data


# the affected images listed per moved tag (`images` counts them all): a hot base can have 100,000
AFFECTED_LIMIT = 100


class StaleBasesView(SnapshotCachedRead, CheckedQuery, APIView):
    @paged_schema(
        s.StaleBasePageSerializer,
        summary="Tags that moved while images built on their old digest are still tagged (most images "
        "first, uncounted offset pages)",
        parameters=[OpenApiParameter("registry", OpenApiTypes.STR, required=True)],
    )
    def get(self, request):
        registry = params.registry(request, required=True)
        answers_refresh(registry_id=registry.id, answers=[STALE_BASES])  # a probe when current

        def fetch(**page) -> list[dict]:
            return [
                {**asdict(r), "affected": [list(map(str, a)) for a in r.affected]}
                for r in stale_bases(registry_id=registry.id, affected_limit=AFFECTED_LIMIT, **page)
            ]

        return OffsetPage().selector_response(request, fetch, s.StaleBaseSerializer)


# --- what-if deletion -------------------------------------------------------------------------------------


def _rule(data) -> whatif.TagRule:
    scope = scope_resolve(
        registry=data.get("registry") or None,
        namespace=data.get("namespace") or None,
        repository=data.get("repository") or None,
    )
    tags = []
    for name in data.get("tags") or []:
        repository, sep, tag = name.rpartition(":")
        if not sep or not repository:
            raise InvalidRequest(f"tags are repository:tag, not {name!r}")
        tags.append((repository, tag))
    if not any(
        [
            scope.registry_id,
            scope.namespace,
            scope.repository_id,
            data.get("tag_glob"),
            tags,
            data.get("images"),
        ]
    ):
        raise InvalidRequest("name a registry, namespace, repository, tag_glob, tags or images")
    return whatif.TagRule(
        registry_id=scope.registry_id,
        namespace=scope.namespace,
        repository_id=scope.repository_id,
        tag_glob=data.get("tag_glob") or None,
        not_seen_days=data.get("not_seen_days"),
        not_pulled_days=data.get("not_pulled_days"),
        keep_newest=data.get("keep_newest"),
        newest_by=data.get("newest_by") or "first_seen",
        tags=tuple(tags),
        holding_ids=tuple(data.get("images") or ()),
    )


def _after(value: str | None, sep: str, name: str) -> tuple[str, str] | None:
    if not value:
        return None
    left, found, right = value.rpartition(sep)
    if not found or not left:
        raise InvalidRequest(f"{name} is repository{sep}{'digest' if sep == '@' else 'tag'}, not {value!r}")
    return left, right


def _next_url(request, name: str, value: str | None) -> str | None:
    if value is None or request.method != "GET":
        return None
    query = request.query_params.copy()
    query[name] = value
    return request.build_absolute_uri(f"{request.path}?{query.urlencode()}")


def _impact_data(impact: whatif.DeletionImpact, request=None) -> dict:
    data = jobs.impact_data(impact)
    last_m, last_t = impact.manifests[-1:], impact.deleted_tags[-1:]
    data["manifests_next"] = f"{last_m[0].repository}@{last_m[0].digest}" if impact.manifests_more else None
    data["deleted_tags_next"] = f"{last_t[0][1]}:{last_t[0][2]}" if impact.deleted_tags_more else None
    data["manifests_next_url"] = _next_url(request, "manifests_after", data["manifests_next"])
    data["deleted_tags_next_url"] = _next_url(request, "tags_after", data["deleted_tags_next"])
    return data


WHATIF_ERRORS = {
    **SCOPE_ERRORS,
    422: OpenApiResponse(description="The selection is too large for a request: narrow it or run a job."),
}


class WhatIfView(CheckedQuery, APIView):
    """Read-only: computes what deleting the selected tags and collecting garbage frees.

    A whole registry (no other rule) is read off the maintained figures; other selections are computed
    when their scope holds at most WHATIF_SYNC_HOLDINGS images, else a 422 that points at the jobs
    (`WhatIfJobsView`). The lists are pages (`details_limit`, `manifests_after`, `tags_after`).
    """

    permission_classes = [ComputeForReaders]
    throttle_scope = EXPENSIVE  # may walk every tag and layer of the selection's repositories

    @extend_schema(
        summary="What-if deletion (rule as query parameters)",
        parameters=[s.WhatIfRequestSerializer],
        responses={200: s.DeletionImpactSerializer, **WHATIF_ERRORS},
    )
    def get(self, request):
        form = s.WhatIfRequestSerializer(data=params.form(request, lists=("tags", "images")))
        form.is_valid(raise_exception=True)
        return self._answer(request, form.validated_data)

    @extend_schema(
        summary="What-if deletion (rule as a JSON body; computes only, deletes nothing)",
        request=s.WhatIfRequestSerializer,
        responses={200: s.DeletionImpactSerializer, **WHATIF_ERRORS},
    )
    def post(self, request):
        form = s.WhatIfRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        return self._answer(request, form.validated_data)

    def _answer(self, request, data):
        impact = whatif.whatif_bounded(
            rule=_rule(data),
            details=data.get("details", True),
            limit=data.get("details_limit", whatif.DEFAULT_DETAILS),
            manifests_after=_after(data.get("manifests_after"), "@", "manifests_after"),
            tags_after=_after(data.get("tags_after"), ":", "tags_after"),
        )
        return Response(s.DeletionImpactSerializer(_impact_data(impact, request)).data)


def _owner(request) -> str:
    user = request.user
    if user and user.is_authenticated:
        return f"user:{user.pk}"
    return f"address:{client_address(request)}"


def _job_data(request, job: WhatIfJob) -> dict:
    data = {f: getattr(job, f) for f in s.WhatIfJobSerializer().fields if f not in ("url", "policy")}
    # the policy's text is the asker's own and up to a megabyte: its format and scope say which job it is
    data["policy"] = None if job.policy is None else {k: v for k, v in job.policy.items() if k != "text"}
    data["url"] = request.build_absolute_uri(reverse("whatif-job", args=[job.id]))
    return s.WhatIfJobSerializer(data).data


def _job_started(request, job: WhatIfJob, created: bool) -> Response:
    """A job asked for: 202 when made now, 200 when the kept one; its URL to poll in `Location`."""
    data = _job_data(request, job)
    return Response(data, status=202 if created else 200, headers={"Location": data["url"]})


class WhatIfJobsView(CheckedQuery, APIView):
    """A what-if as a job: POST the rule (as for `whatif/`), poll the job, read the result."""

    permission_classes = [ComputeForReaders]
    throttle_scope = EXPENSIVE

    @extend_schema(
        summary="Run a what-if as a job (any size); the same rule again returns the same job while kept",
        request=s.WhatIfRequestSerializer,
        responses={
            202: s.WhatIfJobSerializer,
            200: s.WhatIfJobSerializer,
            429: OpenApiResponse(description="As many unfinished jobs as allowed (WHATIF_JOBS_PER_OWNER)."),
            **SCOPE_ERRORS,
        },
    )
    def post(self, request):
        form = s.WhatIfRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        job, created = jobs.whatif_job_start(rule=_rule(form.validated_data), owner=_owner(request))
        return _job_started(request, job, created)


class WhatIfJobView(CheckedQuery, APIView):
    permission_classes = [ComputeForReaders]

    @extend_schema(
        summary="A what-if job: status, progress, and the result once succeeded (yours only)",
        responses={200: s.WhatIfJobSerializer, **SCOPE_ERRORS},
    )
    def get(self, request, pk: int):
        job = WhatIfJob.objects.filter(id=pk, owner=_owner(request)).first()
        if job is None:
            raise NotFound(f"no what-if job {pk} of yours")
        return Response(_job_data(request, job))


# --- cleanup policies previewed -----------------------------------------------------------------------------


class PolicyPreviewView(CheckedQuery, APIView):
    """Read-only: what a cleanup policy would remove from a registry, namespace or repository, and what
    deleting it then collecting garbage frees (per repository and in total), why the largest blobs that
    stay are kept, and what distribution 2.8's `--delete-untagged` would free instead. Nothing is
    deleted or saved. A scope holding more than POLICY_PREVIEW_MAX_HOLDINGS is a 422."""

    permission_classes = [ComputeForReaders]
    throttle_scope = EXPENSIVE  # reads every image and tag of the scope

    @extend_schema(
        summary="Preview a cleanup policy (ECR, GitLab, Harbor or Layerlens's rule): computes only, "
        "deletes and saves nothing",
        request=s.PolicyPreviewRequestSerializer,
        responses={
            200: s.PolicyPreviewSerializer,
            422: OpenApiResponse(
                description="The scope holds more than POLICY_PREVIEW_MAX_HOLDINGS: narrow it."
            ),
            **SCOPE_ERRORS,
        },
    )
    def post(self, request):
        form = s.PolicyPreviewRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        policy = policy_parse(_policy_text(data), format=data.get("format"))
        scope = scope_resolve(
            registry=data["registry"],
            namespace=data.get("namespace") or None,
            repository=data.get("repository") or None,
        )
        scope_check(
            registry_id=scope.registry_id,  # type: ignore[arg-type]
            namespace=scope.namespace,
            repository_id=scope.repository_id,
            most=settings.POLICY_PREVIEW_MAX_HOLDINGS,
        )
        limit = data["details_limit"]
        preview = policy_preview(
            policy=policy,
            registry_id=scope.registry_id,  # type: ignore[arg-type]
            namespace=scope.namespace,
            repository_id=scope.repository_id,
            limit=limit,
            columns=False,
        )
        return Response(s.PolicyPreviewSerializer(preview_answer(preview, limit=limit)).data)


class PolicyPreviewJobsView(CheckedQuery, APIView):
    """A cleanup policy's preview as a job, for a scope of any size: POST as to `policies/preview/`, poll
    the job (`whatif/jobs/{id}/`), read the preview in its result. Nothing is deleted or saved."""

    permission_classes = [ComputeForReaders]
    throttle_scope = EXPENSIVE

    @extend_schema(
        summary="Preview a cleanup policy as a job (any scope); the same policy and scope again returns the "
        "same job while kept",
        request=s.PolicyPreviewRequestSerializer,
        responses={
            202: s.WhatIfJobSerializer,
            200: s.WhatIfJobSerializer,
            429: OpenApiResponse(description="As many unfinished jobs as allowed (WHATIF_JOBS_PER_OWNER)."),
            **SCOPE_ERRORS,
        },
    )
    def post(self, request):
        form = s.PolicyPreviewRequestSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        scope = scope_resolve(
            registry=data["registry"],
            namespace=data.get("namespace") or None,
            repository=data.get("repository") or None,
        )
        job, created = jobs.policy_job_start(
            text=_policy_text(data),
            format=data.get("format"),
            registry_id=scope.registry_id,  # type: ignore[arg-type]
            namespace=scope.namespace,
            repository_id=scope.repository_id,
            owner=_owner(request),
        )
        return _job_started(request, job, created)


def _policy_text(data: dict) -> str:
    """The policy as text: a string as sent, a JSON document as indented JSON (refusals name its lines)."""
    return data["policy"] if isinstance(data["policy"], str) else json.dumps(data["policy"], indent=1)


# --- cold images ------------------------------------------------------------------------------------------

DEFAULT_COLD_DAYS = 30


class ColdImagesView(CheckedQuery, APIView):
    """Images not pulled in N days, and the bytes only they hold. Not cached: the answer moves with the
    clock. Keyset pages (`after=` repository id.manifest id); a CSV without `after` is the whole list
    (rows only: the totals and coverage are in the JSON)."""

    throttle_scope = EXPENSIVE  # the totals run the what-if of the cold tags

    @extend_schema(
        summary="Cold images: not pulled in `days` days, per registry, namespace or repository, with the "
        "bytes deleting their tags would free and since when pulls are counted",
        parameters=[
            *SCOPE_PARAMETERS[:3],
            OpenApiParameter(
                "days",
                OpenApiTypes.INT,
                required=False,
                description=f"The window, default {DEFAULT_COLD_DAYS}, from {pulls.MIN_NOT_PULLED_DAYS} to "
                f"{pulls.MAX_NOT_PULLED_DAYS}; another value is a 400.",
            ),
            OpenApiParameter(
                "totals",
                OpenApiTypes.BOOL,
                required=False,
                description="Compute the totals (default true; false: the page and coverage only).",
            ),
            *KEYSET_PARAMETERS,
        ],
        responses={200: s.ColdPageSerializer, **SCOPE_ERRORS},
    )
    def get(self, request):
        if "page" in request.query_params:
            raise InvalidRequest("page: this list pages by key; follow `next` (`after=`)")
        scope = scope_resolve(
            registry=params.text(request, "registry"),
            namespace=params.text(request, "namespace"),
            repository=params.text(request, "repository"),
        )
        place = whatif.TagRule(
            registry_id=scope.registry_id, namespace=scope.namespace, repository_id=scope.repository_id
        )
        days = params.whole_number(
            request,
            "days",
            default=DEFAULT_COLD_DAYS,
            minimum=pulls.MIN_NOT_PULLED_DAYS,
            maximum=pulls.MAX_NOT_PULLED_DAYS,
        )
        page = KeysetPage(request, parts=2)
        if page.whole_list:
            now = timezone.now()
            fetch = partial(cold_images, place=place, days=days, now=now)
            return page.stream(fetch, self.rows, header=serializer_header(s.ColdImageSerializer()))
        answer = cold_answer(
            place=place,
            days=days,
            after=page.after,  # type: ignore[arg-type]
            limit=page.size,
            totals=params.boolean(request, "totals") if "totals" in request.query_params else True,
        )
        body = page.response(self.rows(answer.images), answer.next_key).data
        data = {
            "days": days,
            "pulls": pulls.coverage_data(answer.coverage),
            "totals": asdict(answer.totals) if answer.totals is not None else None,
            "totals_note": answer.totals_note,
            **body,
        }
        return Response(data)  # rows serialized above; ColdPageSerializer documents the shape

    @staticmethod
    def rows(found: list) -> list[dict]:
        return s.ColdImageSerializer(found, many=True).data


# --- content lists ----------------------------------------------------------------------------------------


class MissedSavingsView(SnapshotCachedRead, CheckedQuery, APIView):
    @paged_schema(
        s.MissedSavingPageSerializer,
        summary="One diff_id stored under several blob digests, per registry",
        parameters=SCOPE_PARAMETERS,
    )
    def get(self, request):
        scope = scope_from_request(request)
        # one probe for every registry; those not current are recomputed
        registries = content.plain_registries(scope) or []
        for registry_id in answers_stale(registry_ids=registries, answer=MISSED_SAVINGS):
            answers_refresh(registry_id=registry_id, answers=[MISSED_SAVINGS])
        return OffsetPage().selector_response(
            request, lambda **p: content.missed_savings(scope=scope, **p), s.MissedSavingSerializer
        )


class BuildHistoryView(SnapshotCachedRead, CheckedQuery, APIView):
    @paged_schema(
        s.InstructionBytesPageSerializer,
        summary="created_by lines ranked by the stored, unique or logical bytes of their layers",
        parameters=[
            *SCOPE_PARAMETERS,
            OpenApiParameter("order", OpenApiTypes.STR, enum=["stored", "unique", "logical"], required=False),
        ],
    )
    def get(self, request):
        scope = scope_from_request(request)
        order = params.choice(request, "order", ("stored", "unique", "logical"))
        return OffsetPage().selector_response(
            request,
            lambda **p: content.bytes_by_instruction(scope=scope, order=order, **p),
            s.InstructionBytesSerializer,
        )


class LargestLayersView(SnapshotCachedRead, CheckedQuery, APIView):
    @paged_schema(
        s.LargeLayerPageSerializer,
        summary="The largest layers in a scope, with the images holding them",
        parameters=SCOPE_PARAMETERS,
    )
    def get(self, request):
        scope = scope_from_request(request)
        return OffsetPage().selector_response(
            request, lambda **p: content.largest_layers(scope=scope, **p), s.LargeLayerSerializer
        )


class CrossRegistryView(SnapshotCachedRead, CheckedQuery, APIView):
    @paged_schema(
        s.CrossRegistryPageSerializer,
        summary="Digests held in more than one registry, and what each copy costs",
        parameters=[UNTAGGED],
    )
    def get(self, request):
        untagged = params.boolean(request, "include_untagged")
        return OffsetPage().selector_response(
            request,
            lambda **p: content.cross_registry_content(include_untagged=untagged, **p),
            s.CrossRegistrySerializer,
        )


# --- trends -----------------------------------------------------------------------------------------------


class TrendsView(SnapshotCachedRead, CheckedQuery, CSVListMixin, generics.ListAPIView):
    serializer_class = s.SnapshotSerializer
    filter_backends: list = []

    @extend_schema(
        summary="Summary figures after each scan, oldest first (a registry's, or one repository's)",
        parameters=[
            OpenApiParameter("registry", OpenApiTypes.STR, required=False),
            OpenApiParameter("repository", OpenApiTypes.INT, required=False, description="Repository id."),
            OpenApiParameter("since", OpenApiTypes.DATETIME, required=False),
            OpenApiParameter("until", OpenApiTypes.DATETIME, required=False),
        ],
        responses={200: s.SnapshotSerializer(many=True), **SCOPE_ERRORS},
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        registry = params.registry(self.request)
        return snapshot_series(
            registry_id=registry.id if registry else None,
            repository_id=params.whole_number(self.request, "repository"),
            since=params.moment(self.request, "since"),
            until=params.moment(self.request, "until"),
        )


class RepositoryGrowthView(SnapshotCachedRead, CheckedQuery, APIView):
    @extend_schema(
        summary="How a repository's figures changed between two dates (from the stored snapshots)",
        parameters=[
            OpenApiParameter("start", OpenApiTypes.DATETIME, required=True),
            OpenApiParameter("end", OpenApiTypes.DATETIME, required=True),
        ],
        responses={200: s.GrowthSerializer, **SCOPE_ERRORS},
    )
    def get(self, request, pk: int):
        repository = Repository.objects.select_related("registry").filter(id=pk).first()
        if repository is None:
            raise NotFound(f"no repository {pk}")
        start = params.moment(request, "start", required=True)
        end = params.moment(request, "end", required=True)
        growth = repository_growth(repository=repository, start=start, end=end)
        return Response(s.GrowthSerializer(growth).data)
