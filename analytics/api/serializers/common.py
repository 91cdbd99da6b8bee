"""Shapes every subject uses: whole-second durations, the error reply, and the pages lists answer in."""

from __future__ import annotations

from datetime import timedelta

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from analytics.registries import MAX_SCAN_INTERVAL


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": int(MAX_SCAN_INTERVAL.total_seconds())})
class DurationSecondsField(serializers.Field):
    """A `DurationField` exposed as whole seconds (an integer), null when unset; at most a year."""

    def to_representation(self, value: timedelta) -> int:
        return int(value.total_seconds())

    def to_internal_value(self, data) -> timedelta:
        try:
            seconds = int(data)
        except (TypeError, ValueError, OverflowError):
            raise serializers.ValidationError("A whole number of seconds is required.")
        if seconds <= 0:
            raise serializers.ValidationError("Must be a positive number of seconds.")
        if seconds > MAX_SCAN_INTERVAL.total_seconds():
            raise serializers.ValidationError(
                f"At most {int(MAX_SCAN_INTERVAL.total_seconds())} seconds ({MAX_SCAN_INTERVAL.days} days)."
            )
        return timedelta(seconds=seconds)


class BoundedListField(serializers.ListField):
    """A ListField whose length is checked before its items: a list far past `max_length` is refused at
    once, not after each of its items was validated."""

    def to_internal_value(self, data):
        if self.max_length is not None and isinstance(data, list | tuple) and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return super().to_internal_value(data)


class ErrorSerializer(serializers.Serializer):
    """Every error reply: a domain error's message, or DRF's own."""

    detail = serializers.CharField()


# A parameter that cannot be used is a 400; a scope naming an unknown registry or repository a 404.
BAD_REQUEST = {400: ErrorSerializer}
SCOPE_ERRORS = {400: ErrorSerializer, 404: ErrorSerializer}


def offset_page(serializer_class: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """An uncounted offset page of `serializer_class` rows (`next`, `previous`, `results`).
    Call once per row shape: the schema names the page after it."""
    name = f"Paged{serializer_class.__name__.removesuffix('Serializer')}ListSerializer"
    return type(
        name,
        (serializers.Serializer,),
        {
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": serializer_class(many=True),
        },
    )
