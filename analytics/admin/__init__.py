"""The Django admin: registries, repositories, engines, cleanup policies, users and API tokens are
managed here; everything a scan wrote, and the policies' evaluations, are read-only.

One module per area, as in `analytics.models`; `base` holds what they share (the guard on secret
columns, the read-only bases, the form and column helpers). Importing the modules here registers their
admins when Django's autodiscovery imports this package.
"""

from analytics.admin import accounts, content, engines, policies, registries, scans

__all__ = ["accounts", "content", "engines", "policies", "registries", "scans"]
