"""Every write of an API token: make one (its secret returned this once, only a digest kept) and revoke.

The command (`manage.py token`) and the admin share these; reads are `analytics.selectors.tokens`.
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from analytics.errors import Conflict, InvalidRequest, NotFound
from analytics.models import ApiToken


def user_get(username: str):
    try:
        return get_user_model().objects.get_by_natural_key(username)
    except get_user_model().DoesNotExist as exc:
        raise NotFound(f"no user {username!r}") from exc


def token_create(*, user, name: str, expires_in: timedelta | None = None) -> tuple[ApiToken, str]:
    """A new token for `user`: the row, and the token itself, which is never stored nor shown again."""
    name = name.strip()
    if not name:
        raise InvalidRequest("a token needs a name")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidRequest("a token's lifetime must be positive")
    try:
        with transaction.atomic():
            return ApiToken.objects.create(user=user, expiry=expires_in, name=name)
    except IntegrityError as exc:
        raise Conflict(f"{user.get_username()} already has a token named {name!r}") from exc


def token_revoke(*, user, name: str | None = None) -> int:
    """Delete `user`'s token called `name` (all of them with None); how many were deleted."""
    tokens = ApiToken.objects.filter(user=user)
    if name is not None:
        tokens = tokens.filter(name=name)
    deleted, _ = tokens.delete()
    if name is not None and not deleted:
        raise NotFound(f"{user.get_username()} has no token named {name!r}")
    return deleted
