"""API tokens as their owners and operators see them: name, owner, first characters, dates; never the
token (it is not stored) nor its digest."""

from __future__ import annotations

from django.db.models import QuerySet

from analytics.models import ApiToken


def token_list(*, user=None) -> QuerySet[ApiToken]:
    tokens = ApiToken.objects.select_related("user").order_by("user__username", "name")
    return tokens.filter(user=user) if user is not None else tokens
