"""Shapes of what scans found: tags and their events, images, layers, layer rankings and the dedup
summary. Image sizes and tags, and an image's layers, come in through the context."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.models import Blob, HistoryEntry, ManifestLayer, RepositoryManifest, Tag, TagEvent


class DedupSummarySerializer(serializers.Serializer):
    """`DedupSummary.as_dict()`: the six summary figures first, then the extras."""

    images = serializers.IntegerField(help_text="Single-platform manifests per repository in the scope.")
    distinct_layers = serializers.IntegerField()
    logical_bytes = serializers.IntegerField(help_text="What the scope would cost if nothing were shared.")
    stored_bytes = serializers.IntegerField(
        help_text="What a registry keeps: distinct digests, counted once."
    )
    saved_bytes = serializers.IntegerField(help_text="logical_bytes - stored_bytes")
    dedup_ratio = serializers.FloatField(help_text="logical_bytes / stored_bytes")
    layers_logical_bytes = serializers.IntegerField()
    layers_stored_bytes = serializers.IntegerField()
    manifests = serializers.IntegerField(
        help_text="Manifests per repository in the scope, of every kind: images, indexes and artifacts."
    )
    indexes = serializers.IntegerField(help_text="Of `manifests`, the indexes (manifest lists).")
    repositories = serializers.IntegerField(help_text="Repositories holding a manifest in the scope.")
    tagged_only = serializers.BooleanField()
    scope = serializers.DictField(child=serializers.JSONField(), help_text="The scope the figures are about.")
    foreign_bytes = serializers.IntegerField(help_text="Foreign layers: named, stored elsewhere.")
    uncompressed_known_layers = serializers.IntegerField(
        help_text="Distinct layers whose uncompressed size is known (engine pull-through or deep scan)."
    )
    uncompressed_coverage = serializers.FloatField(help_text="uncompressed_known_layers / distinct_layers")
    uncompressed_logical_bytes = serializers.IntegerField(
        allow_null=True,
        help_text="Uncompressed layer bytes over those layers, per image; null if none known.",
    )
    uncompressed_stored_bytes = serializers.IntegerField(
        allow_null=True, help_text="Uncompressed bytes of those layers, each counted once."
    )
    uncompressed_known_compressed_bytes = serializers.IntegerField(
        allow_null=True, help_text="The same layers' compressed bytes, each counted once (to compare)."
    )


# --- tags -------------------------------------------------------------------------------------------------


class TagSerializer(serializers.ModelSerializer):
    repository_name = serializers.CharField(source="repository.name", read_only=True)
    registry = serializers.IntegerField(source="repository.registry_id", read_only=True)
    digest = serializers.CharField(source="manifest.digest", read_only=True, allow_null=True, default=None)

    class Meta:
        model = Tag
        fields = [
            "id",
            "registry",
            "repository",
            "repository_name",
            "name",
            "digest",
            "first_seen",
            "last_seen",
            "removed_at",
        ]


class TagEventSerializer(serializers.ModelSerializer):
    tag_name = serializers.CharField(source="tag.name", read_only=True)
    repository = serializers.IntegerField(source="tag.repository_id", read_only=True)
    repository_name = serializers.CharField(source="tag.repository.name", read_only=True)
    action = serializers.SerializerMethodField()

    class Meta:
        model = TagEvent
        fields = [
            "id",
            "tag",
            "tag_name",
            "repository",
            "repository_name",
            "action",
            "old_digest",
            "new_digest",
            "seen_at",
            "scan",
        ]

    def get_action(self, obj: TagEvent) -> str:
        if not obj.old_digest:
            return "created"
        return "removed" if not obj.new_digest else "moved"


# --- images and layers ------------------------------------------------------------------------------------


class LayerSerializer(serializers.ModelSerializer):
    """One layer of an image, bottom (position 0) to top."""

    digest = serializers.CharField(source="blob.digest")
    media_type = serializers.CharField(source="blob.media_type")
    size = serializers.IntegerField(source="blob.size", help_text="Bytes as stored (compressed).")
    uncompressed_size = serializers.IntegerField(source="blob.uncompressed_size", allow_null=True)
    diff_id = serializers.CharField(source="blob.diff_id")
    created_by = serializers.CharField(allow_null=True, read_only=True)

    class Meta:
        model = ManifestLayer
        fields = ["position", "digest", "media_type", "size", "uncompressed_size", "diff_id", "created_by"]


class HistorySerializer(serializers.ModelSerializer):
    layer_digest = serializers.CharField(
        allow_null=True, read_only=True, help_text="Null for an empty layer."
    )
    size = serializers.IntegerField(source="layer_size", allow_null=True, read_only=True)

    class Meta:
        model = HistoryEntry
        fields = [
            "position",
            "created",
            "created_by",
            "comment",
            "author",
            "empty_layer",
            "layer_position",
            "layer_digest",
            "size",
        ]


_SIZE_FIELDS = (
    "size_bytes",
    "shared_bytes",
    "unique_bytes",
    "layers_size_bytes",
    "layers_shared_bytes",
    "layers_unique_bytes",
)


class ImageSerializer(serializers.ModelSerializer):
    """An image: one single-platform manifest held by one repository (`id` is that holding's id).

    Sizes follow `docker system df -v`: `shared_bytes` are parts another image in the scope references
    too, `unique_bytes` what deleting this image frees. The `layers_*` variants count layers only.
    """

    manifest_id = serializers.IntegerField(read_only=True)
    digest = serializers.CharField(source="manifest.digest")
    registry = serializers.IntegerField(source="repository.registry_id")
    registry_name = serializers.CharField(source="repository.registry.name")
    repository = serializers.IntegerField(source="repository_id")
    repository_name = serializers.CharField(source="repository.name")
    tags = serializers.SerializerMethodField(
        help_text="Current tag names naming the image or an index listing it."
    )
    index_tags = serializers.SerializerMethodField(
        help_text="Those of `tags` naming an index that lists the image (a multi-platform tag)."
    )
    platform = serializers.CharField(source="manifest.platform")
    os = serializers.CharField(source="manifest.os")
    architecture = serializers.CharField(source="manifest.architecture")
    variant = serializers.CharField(source="manifest.variant")
    created = serializers.DateTimeField(source="manifest.created", allow_null=True)
    media_type = serializers.CharField(source="manifest.media_type")
    manifest_size = serializers.IntegerField(source="manifest.size")
    config_digest = serializers.CharField(source="manifest.config.digest", allow_null=True, default=None)
    layer_count = serializers.IntegerField(source="manifest.layer_count")
    size_bytes = serializers.SerializerMethodField()
    shared_bytes = serializers.SerializerMethodField()
    unique_bytes = serializers.SerializerMethodField()
    layers_size_bytes = serializers.SerializerMethodField()
    layers_shared_bytes = serializers.SerializerMethodField()
    layers_unique_bytes = serializers.SerializerMethodField()
    pulls = serializers.SerializerMethodField(
        help_text="Pulls of this digest from its repository, counted from the registry's pull events "
        "(the scanner's reads are not pulls); an index's pull is counted on the index."
    )
    last_pulled_at = serializers.SerializerMethodField(help_text="The latest of them; null: none counted.")

    class Meta:
        model = RepositoryManifest
        fields = [
            "id",
            "manifest_id",
            "digest",
            "registry",
            "registry_name",
            "repository",
            "repository_name",
            "tags",
            "index_tags",
            "platform",
            "os",
            "architecture",
            "variant",
            "created",
            "media_type",
            "manifest_size",
            "config_digest",
            "layer_count",
            *_SIZE_FIELDS,
            "pulls",
            "last_pulled_at",
            "present",
            "first_seen",
            "last_seen",
        ]

    def _size(self, obj: RepositoryManifest, name: str) -> int | None:
        sizes = self.context.get("sizes", {}).get(obj.id)
        return getattr(sizes, name) if sizes is not None else None

    def to_representation(self, instance: RepositoryManifest) -> dict:
        """The fields above, read straight off the row and the context: DRF's field-by-field walk cost
        most of an image page (fifty rows of twenty-nine fields). A field not read here (a subclass's)
        goes through DRF's own."""
        image, manifest, repository = instance, instance.manifest, instance.repository
        sizes = self.context.get("sizes", {}).get(image.id)
        tags = self.context.get("tags", {}).get(image.id)
        fields = self.fields
        when = fields["created"].to_representation
        values = {
            "id": image.id,
            "manifest_id": image.manifest_id,
            "digest": manifest.digest,
            "registry": repository.registry_id,
            "registry_name": repository.registry.name,
            "repository": image.repository_id,
            "repository_name": repository.name,
            "tags": tags.names if tags is not None else [],
            "index_tags": tags.index if tags is not None else [],
            "platform": manifest.platform,
            "os": manifest.os,
            "architecture": manifest.architecture,
            "variant": manifest.variant,
            "created": when(manifest.created) if manifest.created is not None else None,
            "media_type": manifest.media_type,
            "manifest_size": manifest.size,
            "config_digest": manifest.config.digest if manifest.config_id is not None else None,
            "layer_count": manifest.layer_count,
            "present": image.present,
            "first_seen": when(image.first_seen) if image.first_seen is not None else None,
            "last_seen": when(image.last_seen) if image.last_seen is not None else None,
        }
        for name in _SIZE_FIELDS:
            values[name] = getattr(sizes, name) if sizes is not None else None
        row = {}
        for name in self.Meta.fields:
            if name in values:
                row[name] = values[name]
            else:
                field = fields[name]
                attribute = field.get_attribute(instance)
                row[name] = None if attribute is None else field.to_representation(attribute)
        return row

    def get_tags(self, obj: RepositoryManifest) -> list[str]:
        tags = self.context.get("tags", {}).get(obj.id)
        return tags.names if tags is not None else []

    def get_index_tags(self, obj: RepositoryManifest) -> list[str]:
        tags = self.context.get("tags", {}).get(obj.id)
        return tags.index if tags is not None else []

    def _pulls(self, obj: RepositoryManifest):
        return self.context.get("pulls", {}).get(obj.id)

    @extend_schema_field(OpenApiTypes.INT)
    def get_pulls(self, obj) -> int | None:
        found = self._pulls(obj)
        return found.pulls if found is not None else None

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_last_pulled_at(self, obj) -> str | None:
        found = self._pulls(obj)
        if found is None or found.last_pulled_at is None:
            return None
        return serializers.DateTimeField().to_representation(found.last_pulled_at)

    @extend_schema_field(OpenApiTypes.INT)
    def get_size_bytes(self, obj) -> int | None:
        return self._size(obj, "size_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_shared_bytes(self, obj) -> int | None:
        return self._size(obj, "shared_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_unique_bytes(self, obj) -> int | None:
        return self._size(obj, "unique_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_layers_size_bytes(self, obj) -> int | None:
        return self._size(obj, "layers_size_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_layers_shared_bytes(self, obj) -> int | None:
        return self._size(obj, "layers_shared_bytes")

    @extend_schema_field(OpenApiTypes.INT)
    def get_layers_unique_bytes(self, obj) -> int | None:
        return self._size(obj, "layers_unique_bytes")


class ImageDetailSerializer(ImageSerializer):
    layers = serializers.SerializerMethodField()

    class Meta(ImageSerializer.Meta):
        fields = [*ImageSerializer.Meta.fields, "layers"]

    @extend_schema_field(
        serializers.ListSerializer(
            child=LayerSerializer(),
            help_text="Bottom to top, at most 1000 (`layer_count` says how many there are; "
            "`images/{id}/layers/` pages them all).",
        )
    )
    def get_layers(self, obj) -> list[dict]:
        return LayerSerializer(self.context.get("layers", []), many=True).data


class RankedLayerSerializer(serializers.ModelSerializer):
    """A layer blob with how many images and repositories in the scope hold it."""

    images = serializers.IntegerField(read_only=True)
    repositories = serializers.IntegerField(read_only=True)
    saved_bytes = serializers.IntegerField(read_only=True, help_text="size × (images − 1)")
    created_by = serializers.CharField(read_only=True, allow_null=True)

    class Meta:
        model = Blob
        fields = [
            "digest",
            "media_type",
            "size",
            "uncompressed_size",
            "diff_id",
            "images",
            "repositories",
            "saved_bytes",
            "created_by",
        ]


class TopLayerSerializer(serializers.Serializer):
    """A layer of a registry ranked by the maintained counts (`RankedLayer`)."""

    digest = serializers.CharField()
    size = serializers.IntegerField()
    diff_id = serializers.CharField()
    images = serializers.IntegerField()
    repositories = serializers.IntegerField()
    saved_bytes = serializers.IntegerField(help_text="size × (images − 1)")
    created_by = serializers.CharField(allow_null=True, help_text="From the oldest manifest listing it.")


class LayerTopPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    results = TopLayerSerializer(many=True)


class LayerRepositorySerializer(serializers.Serializer):
    """A repository whose tagged images list a layer (`LayerRepository`)."""

    repository_id = serializers.IntegerField()
    registry_id = serializers.IntegerField()
    name = serializers.CharField()
    images = serializers.IntegerField(help_text="Its images listing the layer.")


class LayerRepositoriesPageSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Repositories holding the layer (maintained).")
    next = serializers.URLField(allow_null=True)
    results = LayerRepositorySerializer(many=True)
