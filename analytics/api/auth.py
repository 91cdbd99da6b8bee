"""Who is calling the API: an API token, a session (the pages' and the admin's login), or, when
`LAYERLENS_API_BASIC_AUTH` is on, a user name and password.

The first class of `DEFAULT_AUTHENTICATION_CLASSES` names the challenge of a 401, so the token comes
first: a missing or wrong credential is a 401 with `WWW-Authenticate`, never a 403.
"""

from __future__ import annotations

from django.conf import settings
from django.utils import timezone
from drf_spectacular.authentication import BasicScheme as SpectacularBasicScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.settings import knox_settings
from rest_framework import authentication, exceptions
from rest_framework.authentication import get_authorization_header

REALM = 'realm="api"'


class TokenAuthentication(KnoxTokenAuthentication):
    """`Authorization: Bearer <token>`: one indexed lookup and one SHA-512, no password hash."""

    def authenticate(self, request):
        # knox's own reads the scheme from authenticate_header, which here carries the realm too
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != knox_settings.AUTH_HEADER_PREFIX.lower().encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: Bearer and the token.")
        return self.authenticate_credentials(parts[1])

    def authenticate_credentials(self, token: bytes):
        try:
            token.decode("utf-8")
        except UnicodeDecodeError as exc:  # knox would let this out as a 500
            raise exceptions.AuthenticationFailed("Invalid token.") from exc
        return super().authenticate_credentials(token)

    def _cleanup_token(self, auth_token) -> bool:
        """Whether this token has expired (then deleted). knox's own also reads every other token of the
        user on each request, to delete the expired ones: a query per request, and work that grows with
        the user's tokens. An expired token is refused all the same, wherever it is left."""
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False

    def authenticate_header(self, request) -> str:
        challenges = [f"Bearer {REALM}"]
        if settings.LAYERLENS_API_BASIC_AUTH:
            challenges.append(f"Basic {REALM}")
        return ", ".join(challenges)


class LockedOut(exceptions.Throttled):
    default_detail = "Too many failed logins from this address or for this user; try again later."


class BasicAuthentication(authentication.BasicAuthentication):
    """A user name and password per request, only with `LAYERLENS_API_BASIC_AUTH`; the password is checked
    through django-axes, so a locked-out address or user gets a 429 before any password is hashed."""

    def authenticate(self, request):
        if not settings.LAYERLENS_API_BASIC_AUTH:
            return None
        return super().authenticate(request)

    def authenticate_credentials(self, userid, password, request=None):
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            if getattr(request, "axes_locked_out", False):  # set by django-axes on this request
                raise LockedOut(wait=settings.AXES_COOLOFF_TIME.total_seconds()) from None
            raise


class TokenScheme(OpenApiAuthenticationExtension):
    """The token in the OpenAPI schema (and Swagger UI's Authorize button)."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API token (`manage.py token create USER --name NAME`, or the admin).",
        }


class BasicScheme(SpectacularBasicScheme):
    target_class = BasicAuthentication

    def get_security_definition(self, auto_schema):
        return {
            **super().get_security_definition(auto_schema),
            "description": "Only with LAYERLENS_API_BASIC_AUTH.",
        }
