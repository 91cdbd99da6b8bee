"""Who is calling the API: an API token, or a session (the pages' and the admin's login).

The first class of `DEFAULT_AUTHENTICATION_CLASSES` names the challenge of a 401, so the token comes
first: a missing or wrong credential is a 401 with `WWW-Authenticate`, never a 403.
"""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.settings import knox_settings
from rest_framework import exceptions
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

    def authenticate_header(self, request) -> str:
        return f"Bearer {REALM}"


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
