"""Shapes of the insight answers (partners, lineage, what-if, content lists, trends); each reads
attributes of a selector's dataclass, no queries."""

from __future__ import annotations

from rest_framework import serializers

from analytics.api.params import MAX_INT
from analytics.api.serializers.common import BoundedListField, offset_page
from analytics.models import SummarySnapshot
from analytics.policies import preview as policy_formats
from analytics.policies.document import MAX_POLICY_BYTES
from analytics.selectors import pulls, whatif
from analytics.selectors.scope import MAX_GLOB_CHARS


class PartnerSerializer(serializers.Serializer):
    image = serializers.IntegerField(source="holding_id", help_text="Image (repository-manifest) id.")
    repository = serializers.CharField()
    digest = serializers.CharField()
    shared_blobs = serializers.IntegerField()
    shared_bytes = serializers.IntegerField(help_text="Bytes of the digests both reference.")


class BaseImageSerializer(serializers.Serializer):
    image = serializers.IntegerField(source="holding_id")
    repository = serializers.CharField()
    digest = serializers.CharField()
    shared_layers = serializers.IntegerField(help_text="The base's layer count: the common ordered prefix.")


class LineageSerializer(serializers.Serializer):
    base = BaseImageSerializer(allow_null=True)
    chain = BaseImageSerializer(many=True, help_text="Base, its base, ... down to the root.")
    tagged_only = serializers.BooleanField()


class DerivedImageSerializer(serializers.Serializer):
    image = serializers.IntegerField(source="holding_id", help_text="Image (repository-manifest) id.")
    repository = serializers.CharField()
    digest = serializers.CharField()
    extra_layers = serializers.IntegerField(help_text="Layers it adds on top of this image's.")


class DerivedImagePageSerializer(serializers.Serializer):
    """A keyset page of `images/{id}/derived/`: no count (it would cost the whole list)."""

    next = serializers.URLField(
        allow_null=True,
        help_text="The next page (`after=`), null after the last. A page may hold fewer rows than "
        "`page_size`, even none, and still have a next one: follow it until it is null.",
    )
    previous = serializers.URLField(allow_null=True, help_text="Always null: keyset pages go forward only.")
    results = DerivedImageSerializer(many=True)


class StaleBaseSerializer(serializers.Serializer):
    repository = serializers.CharField(help_text="The base's repository.")
    tag = serializers.CharField(help_text="The tag that moved.")
    old_digest = serializers.CharField(help_text="The base the images were built on.")
    new_digest = serializers.CharField(help_text="What the tag names now.")
    moved_at = serializers.DateTimeField()
    images = serializers.IntegerField()
    image_bytes = serializers.IntegerField(help_text="Σ of the affected images' sizes.")
    affected = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="[image id, repository, digest] per affected image, by image id: the first 100 "
        "(images counts them all).",
    )
    still_tagged = serializers.ListField(
        child=serializers.CharField(),
        help_text="repository:tag of the registry's tags that still name the old digest (a mirror, a "
        "pinned copy), the first 20: the images are stale all the same, the tag they were built from moved.",
    )


StaleBasePageSerializer = offset_page(StaleBaseSerializer)


class MissedSavingSerializer(serializers.Serializer):
    registry_id = serializers.IntegerField()
    registry = serializers.CharField()
    diff_id = serializers.CharField()
    copies = serializers.IntegerField()
    stored_bytes = serializers.IntegerField()
    smallest_bytes = serializers.IntegerField()
    saved_bytes = serializers.IntegerField(help_text="stored_bytes - smallest_bytes: one copy instead.")
    blobs = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()), help_text="[digest, media type, size]."
    )


MissedSavingPageSerializer = offset_page(MissedSavingSerializer)


class InstructionBytesSerializer(serializers.Serializer):
    created_by = serializers.CharField()
    layers = serializers.IntegerField()
    stored_bytes = serializers.IntegerField()
    unique_bytes = serializers.IntegerField(help_text="Layers held by one image of the scope only.")
    logical_bytes = serializers.IntegerField()


InstructionBytesPageSerializer = offset_page(InstructionBytesSerializer)


class LargeLayerSerializer(serializers.Serializer):
    digest = serializers.CharField()
    size = serializers.IntegerField()
    uncompressed_size = serializers.IntegerField(allow_null=True)
    registry_id = serializers.IntegerField()
    images = serializers.IntegerField()
    created_by = serializers.CharField()


LargeLayerPageSerializer = offset_page(LargeLayerSerializer)


class CrossRegistrySerializer(serializers.Serializer):
    kind = serializers.CharField()
    digest = serializers.CharField()
    size = serializers.IntegerField()
    registries = serializers.IntegerField()
    total_bytes = serializers.IntegerField(help_text="size × registries: each keeps its own copy.")
    registry_names = serializers.ListField(child=serializers.CharField())


CrossRegistryPageSerializer = offset_page(CrossRegistrySerializer)


class SnapshotSerializer(serializers.ModelSerializer):
    class Meta:
        model = SummarySnapshot
        fields = [
            "id",
            "taken_at",
            "scan",
            "registry",
            "repository",
            "images",
            "manifests",
            "distinct_layers",
            "logical_bytes",
            "stored_bytes",
            "saved_bytes",
        ]


class GrowthSerializer(serializers.Serializer):
    repository = serializers.CharField()
    start = SnapshotSerializer(allow_null=True, help_text="Last snapshot at or before `start`.")
    end = SnapshotSerializer(allow_null=True, help_text="Last snapshot at or before `end`.")
    images = serializers.IntegerField()
    logical_bytes = serializers.IntegerField()
    stored_bytes = serializers.IntegerField()
    saved_bytes = serializers.IntegerField()


class WhatIfRequestSerializer(serializers.Serializer):
    registry = serializers.CharField(
        required=False, max_length=500, help_text="Registry by id, name, URL or host:port."
    )
    namespace = serializers.CharField(required=False, max_length=255)
    repository = serializers.CharField(required=False, max_length=255)
    tag_glob = serializers.CharField(required=False, max_length=MAX_GLOB_CHARS)
    not_seen_days = serializers.IntegerField(required=False, min_value=0, max_value=whatif.MAX_NOT_SEEN_DAYS)
    not_pulled_days = serializers.IntegerField(
        required=False,
        min_value=pulls.MIN_NOT_PULLED_DAYS,
        max_value=pulls.MAX_NOT_PULLED_DAYS,
        help_text="Tags reaching only manifests not pulled in N days (cold tags; see `cold/`).",
    )
    keep_newest = serializers.IntegerField(required=False, min_value=0, max_value=whatif.MAX_KEEP_NEWEST)
    newest_by = serializers.ChoiceField(choices=whatif.NEWEST_BY, default="first_seen")
    tags = BoundedListField(
        child=serializers.CharField(),
        required=False,
        max_length=whatif.MAX_LISTED,
        error_messages={"max_length": whatif.too_many_listed("tags")},
        help_text=f"Explicit `repository:tag` names, at most {whatif.MAX_LISTED}.",
    )
    images = BoundedListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_INT),
        required=False,
        max_length=whatif.MAX_LISTED,
        error_messages={"max_length": whatif.too_many_listed("images")},
        help_text=f"Image ids: the tags naming them; at most {whatif.MAX_LISTED}.",
    )
    details = serializers.BooleanField(
        default=True,
        help_text=(
            "List the manifests and tags affected: a page of `details_limit` of each (false: the "
            "figures only, and the lists are not computed)."
        ),
    )
    details_limit = serializers.IntegerField(
        default=whatif.DEFAULT_DETAILS,
        min_value=1,
        max_value=whatif.MAX_DETAILS,
        help_text=f"Rows per list (default {whatif.DEFAULT_DETAILS}, at most {whatif.MAX_DETAILS}).",
    )
    manifests_after = serializers.CharField(
        required=False,
        max_length=600,
        help_text="`repository@digest`: list the lost manifests after this one (`manifests_next`).",
    )
    tags_after = serializers.CharField(
        required=False,
        max_length=600,
        help_text="`repository:tag`: list the deleted tags after this one (`deleted_tags_next`).",
    )


class LostManifestSerializer(serializers.Serializer):
    repository = serializers.CharField()
    digest = serializers.CharField()
    kind = serializers.CharField()
    size = serializers.IntegerField()
    freed = serializers.BooleanField(
        help_text="No other repository of the registry keeps it; false: it stays (in shared_manifests)."
    )


class DeletionImpactSerializer(serializers.Serializer):
    tags = serializers.IntegerField(help_text="Tags deleted.")
    manifests_untagged = serializers.IntegerField()
    manifests_freed = serializers.IntegerField()
    blobs_freed = serializers.IntegerField()
    freed_bytes = serializers.IntegerField(help_text="What garbage collection then removes.")
    freed_manifest_bytes = serializers.IntegerField()
    freed_blob_bytes = serializers.IntegerField()
    shared_blobs = serializers.IntegerField(
        help_text="Blobs of the untagged manifests that stay: a manifest the registry keeps references them."
    )
    shared_bytes = serializers.IntegerField(help_text="Their bytes (blobs only).")
    shared_manifests = serializers.IntegerField(
        help_text="Untagged manifests that stay: another repository of the registry keeps them."
    )
    shared_manifest_bytes = serializers.IntegerField(help_text="Their bytes.")
    kept_bytes = serializers.IntegerField(
        help_text=(
            "What stays of the selection: shared_manifest_bytes + shared_bytes. freed_bytes + kept_bytes is "
            "every distinct byte (per registry) of the untagged manifests and their blobs; deleting every "
            "tag of a scope, the scope's stored_bytes (plus foreign_bytes; per registry, added)."
        )
    )
    manifests = LostManifestSerializer(many=True)
    deleted_tags = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()), help_text="[id, repository, tag, digest]."
    )
    answered_by = serializers.ChoiceField(
        choices=["maintained", "computed"],
        help_text="maintained: read off the maintained figures (a whole registry); computed: the query.",
    )
    manifests_next = serializers.CharField(
        allow_null=True,
        help_text="`manifests_after` for the next page of `manifests`; null on the last.",
    )
    deleted_tags_next = serializers.CharField(
        allow_null=True,
        help_text="`tags_after` for the next page of `deleted_tags`; null on the last.",
    )
    manifests_next_url = serializers.CharField(
        allow_null=True, help_text="The next page as a GET (GET only)."
    )
    deleted_tags_next_url = serializers.CharField(
        allow_null=True, help_text="The next page as a GET (GET only)."
    )
    pulls = serializers.JSONField(
        allow_null=True,
        help_text="With not_pulled_days: where pull figures come from and whether they span the window "
        "(`PullCoverage` of `cold/`); null otherwise.",
    )


# --- cleanup policies previewed ----------------------------------------------------------------------------


class PolicyPreviewRequestSerializer(serializers.Serializer):
    policy = serializers.JSONField(
        help_text=(
            "The policy: its JSON document (an object), or its text as a string, as pasted: an ECR "
            "lifecycle policy, a GitLab cleanup policy (container_expiration_policy_attributes or its "
            "fields), a Harbor "
            f"tag retention policy, or Layerlens's what-if rule. At most {MAX_POLICY_BYTES:,} bytes of text, "
            "nested at most 8 levels; a refusal names the line or the JSON path."
        )
    )
    format = serializers.ChoiceField(
        choices=list(policy_formats.FORMATS),
        required=False,
        help_text="The policy's format; by default told from its fields.",
    )
    registry = serializers.CharField(max_length=500, help_text="Registry by id, name, URL or host:port.")
    namespace = serializers.CharField(required=False, max_length=255)
    repository = serializers.CharField(required=False, max_length=255)
    details_limit = serializers.IntegerField(
        default=whatif.DEFAULT_DETAILS,
        min_value=1,
        max_value=whatif.MAX_DETAILS,
        help_text=(
            f"Rows per list (removed tags, untagged images, lost manifests, repositories; default "
            f"{whatif.DEFAULT_DETAILS}, at most {whatif.MAX_DETAILS}); the counts cover them all."
        ),
    )


class RepositoryImpactSerializer(serializers.Serializer):
    repository = serializers.CharField()
    tags = serializers.IntegerField(help_text="Tags the policy removes there.")
    manifests_untagged = serializers.IntegerField(help_text="Its holdings no remaining tag reaches.")
    manifests_freed = serializers.IntegerField(help_text="Freed manifests attributed to it.")
    blobs_freed = serializers.IntegerField()
    freed_bytes = serializers.IntegerField(
        help_text="Bytes freed that only this repository's lost holdings held (shared ones: shared_freed)."
    )


class SharedFreedSerializer(serializers.Serializer):
    manifests = serializers.IntegerField()
    blobs = serializers.IntegerField()
    freed_bytes = serializers.IntegerField(
        help_text="Freed bytes two or more of the removed repositories held: counted once, here."
    )


class HolderSerializer(serializers.Serializer):
    repository = serializers.CharField()
    digest = serializers.CharField()
    kind = serializers.CharField()
    tags = serializers.ListField(
        child=serializers.CharField(), help_text="Tags naming it (a few); none: held through an index."
    )


class KeptBlobSerializer(serializers.Serializer):
    digest = serializers.CharField()
    media_type = serializers.CharField()
    size = serializers.IntegerField()
    kept_by = serializers.IntegerField(help_text="Images and other holdings that still reference it.")
    holders = HolderSerializer(many=True, help_text="A few of them.")


class DeleteUntaggedSerializer(serializers.Serializer):
    freed_bytes = serializers.IntegerField(
        help_text="What distribution 2.8's garbage-collect --delete-untagged frees after the same deletions."
    )
    trap_bytes = serializers.IntegerField(
        help_text="Of it, beyond freed_bytes: the content of the untagged children of tagged multi-platform "
        "indexes that stay (distribution 2.8 marks an index's direct references only; fixed in 3.0)."
    )
    indexes_kept = serializers.IntegerField(help_text="Tagged indexes that stay in the registry.")
    blobs = serializers.IntegerField()
    manifests = serializers.IntegerField()
    collector = serializers.CharField()


class PolicyImpactSerializer(DeletionImpactSerializer):
    repositories = RepositoryImpactSerializer(
        many=True, help_text="Each repository's part, most freed first (the first `details_limit`)."
    )
    repositories_total = serializers.IntegerField(help_text="Repositories the deletion touches.")
    repositories_rest = SharedFreedSerializer(
        help_text="The repositories past the list, summed (manifests, blobs, freed_bytes)."
    )
    shared_freed = SharedFreedSerializer(
        help_text="repositories' freed_bytes + repositories_rest + shared_freed = freed_bytes, exactly."
    )
    kept_largest = KeptBlobSerializer(
        many=True,
        help_text="Why this frees nothing: the largest blobs of the removed images that stay, and who "
        "keeps them.",
    )


class PolicyPreviewSerializer(serializers.Serializer):
    format = serializers.CharField()
    registry = serializers.CharField()
    namespace = serializers.CharField(allow_null=True)
    repository = serializers.CharField(allow_null=True)
    removed_tags = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="[repository, tag, digest], by repository and tag (the first `details_limit`).",
    )
    removed_tags_more = serializers.BooleanField(help_text="More than listed; impact.tags counts them.")
    removed_untagged = serializers.ListField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="[repository, digest]: untagged images the policy expires (not in freed_bytes).",
    )
    removed_untagged_count = serializers.IntegerField()
    tags_kept = serializers.IntegerField()
    push_times = serializers.JSONField(
        allow_null=True,
        help_text="Where the push times read came from: events, scans, or both, with how many of each.",
    )
    pulls = serializers.JSONField(
        allow_null=True, help_text="The pulls' coverage, when the policy reads pulls."
    )
    impact = PolicyImpactSerializer()
    delete_untagged = DeleteUntaggedSerializer()
    notes = serializers.ListField(child=serializers.CharField())


class WhatIfJobSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=["queued", "running", "succeeded", "failed"])
    phase = serializers.CharField(help_text="What the worker is doing now.")
    steps_done = serializers.IntegerField()
    steps_total = serializers.IntegerField()
    tags_selected = serializers.IntegerField(allow_null=True)
    rule = serializers.JSONField(allow_null=True, help_text="The what-if rule (null for a policy's job).")
    policy = serializers.JSONField(
        allow_null=True,
        help_text="A policy's job: its format and scope (`registry_id`, `namespace`, `repository_id`); "
        "null for a rule's.",
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(help_text="The result is kept until then.")
    error = serializers.CharField()
    url = serializers.CharField(help_text="Poll here.")
    result = serializers.JSONField(
        allow_null=True,
        help_text=(
            "When succeeded: the what-if's figures, with at most WHATIF_JOB_DETAILS (1,000) lost manifests "
            "and deleted tags (`manifests_more` / `deleted_tags_more` say whether more exist); a policy's "
            "job: its preview, as `policies/preview/` answers it, each list cut at WHATIF_JOB_DETAILS."
        ),
    )


# --- cold images ------------------------------------------------------------------------------------------


class RegistryPullsSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    followed = serializers.BooleanField(help_text="It has an events secret: it is meant to send its events.")
    counted_since = serializers.DateTimeField(
        allow_null=True, help_text="Pulls are counted from then on (its oldest event); null: no event yet."
    )
    covered = serializers.BooleanField(help_text="counted_since is at or before the window's start.")


class PullCoverageSerializer(serializers.Serializer):
    source = serializers.CharField(help_text="Where pull figures come from.")
    days = serializers.IntegerField()
    cutoff = serializers.DateTimeField(help_text="now - days: a pull at or after it warms.")
    covered = serializers.BooleanField(
        help_text="Every registry of the answer has counted pulls since the cutoff. False: over this "
        "window, not pulled may only mean not counted yet."
    )
    registries = RegistryPullsSerializer(many=True, help_text="The registries of the answer, the first 100.")


class ColdImageSerializer(serializers.Serializer):
    image = serializers.IntegerField(source="holding_id", help_text="Image (repository-manifest) id.")
    repository_id = serializers.IntegerField()
    repository = serializers.CharField()
    digest = serializers.CharField()
    platform = serializers.CharField()
    size_bytes = serializers.IntegerField(help_text="Manifest, config and distinct layers (as `images/`).")
    pulls = serializers.IntegerField(help_text="Pulls of its own digest in its repository, ever counted.")
    last_pulled_at = serializers.DateTimeField(
        allow_null=True,
        help_text="The latest pull warming it (its digest or an index listing it), before the cutoff; "
        "null: never pulled since counting began.",
    )


class ColdTotalsSerializer(serializers.Serializer):
    images = serializers.IntegerField(help_text="Cold images.")
    logical_bytes = serializers.IntegerField(help_text="Their size_bytes summed: as if nothing were shared.")
    tags = serializers.IntegerField(help_text="Cold tags: every manifest they reach is cold.")
    freed_bytes = serializers.IntegerField(
        help_text="What deleting the cold tags, then garbage collection, frees (the what-if of them)."
    )
    kept_bytes = serializers.IntegerField(
        help_text="What of their content stays: warm manifests or other repositories use it."
    )
    manifests_untagged = serializers.IntegerField()
    manifests_freed = serializers.IntegerField()
    blobs_freed = serializers.IntegerField()


class ColdPageSerializer(serializers.Serializer):
    """A keyset page of cold images, with the coverage and (when computed) the totals."""

    days = serializers.IntegerField()
    pulls = PullCoverageSerializer()
    totals = ColdTotalsSerializer(
        allow_null=True, help_text="Null when not asked (`totals=false`) or the place is too large."
    )
    totals_note = serializers.CharField(
        allow_null=True, help_text="Why totals is null, and where to get them."
    )
    next = serializers.URLField(
        allow_null=True,
        help_text="The next page (`after=`), null after the last. A page examines at most 5,000 images: it "
        "may hold fewer rows than `page_size`, even none, and still have a next one: follow it until null.",
    )
    results = ColdImageSerializer(many=True)
