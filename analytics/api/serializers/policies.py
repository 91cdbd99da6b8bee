"""Shapes of saved cleanup policies and their points; writes go through `analytics.policies.saved`."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.errors import InvalidRequest
from analytics.models import CleanupPolicy, PolicyEvaluation, Registry
from analytics.policies.saved import (
    MAX_NAME_CHARS,
    MAX_SCOPE_CHARS,
    cleanup_policy_create,
    cleanup_policy_update,
)


class StrictCharField(serializers.CharField):
    """A string and nothing else: a number, a list or an object is refused, not turned into text."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError(f"Must be a string, not {type(data).__name__}.")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true or false (as JSON, or the browsable API's form values)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or data in ("true", "false", "on", "off", ""):
            return super().to_internal_value(data)
        raise serializers.ValidationError(f"Must be true or false, not {data!r}.")


class PolicyEvaluationSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyEvaluation
        fields = [
            "at",
            "freed_bytes",
            "tags_removed",
            "manifests_freed",
            "blobs_freed",
            "untagged_expired",
            "push_times",
            "content_version",
            "revision",
            "seconds",
            "error",
        ]
        extra_kwargs = {
            "freed_bytes": {
                "help_text": "What deleting the policy's selection, then collecting garbage, frees."
            },
            "push_times": {"help_text": "Where the push times the selection read came from."},
            "error": {
                "help_text": "Why the evaluation was refused (pulls not counted, too long); empty if not."
            },
        }


class CleanupPolicySerializer(serializers.ModelSerializer):
    registry = serializers.PrimaryKeyRelatedField(
        queryset=Registry.objects.all(), help_text="Registry id; fixed once the policy is saved."
    )
    registry_name = serializers.CharField(source="registry.name", read_only=True)
    name = StrictCharField(max_length=MAX_NAME_CHARS, help_text="Unique per registry.")
    format = serializers.ChoiceField(
        choices=CleanupPolicy.Format.choices,
        required=False,
        help_text="ecr, gitlab, harbor or layerlens; guessed from the text's fields when left out.",
    )
    # No max_length here: the policy reader refuses a text past 64 KiB with its own message.
    text = StrictCharField(
        trim_whitespace=False,
        style={"base_template": "textarea.html"},
        help_text="The policy's document as JSON text, kept as given.",
    )
    namespace = StrictCharField(
        max_length=MAX_SCOPE_CHARS, required=False, allow_blank=True, help_text="Only this namespace."
    )
    repository = StrictCharField(
        max_length=MAX_SCOPE_CHARS,
        required=False,
        allow_blank=True,
        help_text="Only this repository (by name, recorded in the registry).",
    )
    enabled = StrictBooleanField(required=False, help_text="Evaluated after each scan or batch of events.")
    latest = serializers.SerializerMethodField(help_text="The latest evaluation (null: none yet).")

    class Meta:
        model = CleanupPolicy
        fields = [
            "id",
            "registry",
            "registry_name",
            "name",
            "format",
            "text",
            "namespace",
            "repository",
            "enabled",
            "revision",
            "created_at",
            "updated_at",
            "latest",
        ]
        read_only_fields = ["revision", "created_at", "updated_at"]

    def get_fields(self):
        fields = super().get_fields()
        if self.instance is not None and not isinstance(self.instance, list | tuple):
            fields["registry"].read_only = True
        return fields

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        writable = {name for name, f in self.fields.items() if not f.read_only}
        # (the browsable API's form carries its CSRF token among the fields)
        unknown = sorted(k for k in data if k not in self.fields and k != "csrfmiddlewaretoken")
        if unknown:
            raise InvalidRequest(f"{unknown[0]}: unknown field (known: {', '.join(sorted(writable))})")
        return super().to_internal_value(data)

    @extend_schema_field(PolicyEvaluationSerializer(allow_null=True))
    def get_latest(self, obj: CleanupPolicy) -> dict | None:
        latest = getattr(obj, "latest", None)
        if latest is None:  # not read through `policy_list`
            latest = list(obj.evaluations.order_by("-at", "-id")[:1])
        return PolicyEvaluationSerializer(latest[0]).data if latest else None

    def create(self, validated_data) -> CleanupPolicy:
        return cleanup_policy_create(**validated_data)

    def update(self, instance: CleanupPolicy, validated_data) -> CleanupPolicy:
        validated_data.pop("registry", None)
        return cleanup_policy_update(policy=instance, **validated_data)
