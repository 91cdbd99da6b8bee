"""API tokens: what a script presents instead of its user's password.

django-rest-knox keeps only a SHA-512 digest of each token (the token itself is shown once, when it is
made) and finds it by its first characters (`token_key`), so checking a token costs one indexed query
and one hash, not a password hash. This model is knox's, swapped in (`KNOX_TOKEN_MODEL`) to give each
of a user's tokens a name.
"""

from __future__ import annotations

from django.db import models
from knox.models import AbstractAuthToken


class ApiToken(AbstractAuthToken):
    name = models.CharField(max_length=100, help_text="What the token is for; unique per user.")

    class Meta:
        verbose_name = "API token"
        # No default ordering: knox finds a presented token with this model's default query on every
        # request, and compiling an ORDER BY was a fifth of that check. Lists order themselves.
        constraints = [models.UniqueConstraint(fields=["user", "name"], name="apitoken_user_name_unique")]

    def __str__(self) -> str:
        return f"{self.user} / {self.name}"
