"""Who may call the API: reads for users (or anyone, with anonymous reads on), writes for staff."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission


class ReadAnyWriteStaff(BasePermission):
    """Reads for authenticated users (or anyone, if LAYERLENS_ANONYMOUS_READ); writes for staff only."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if request.method in SAFE_METHODS:
            return bool(settings.LAYERLENS_ANONYMOUS_READ or (user and user.is_authenticated))
        return bool(user and user.is_authenticated and user.is_staff)


class ComputeForReaders(BasePermission):
    """Read-only computations may be POSTed by anyone allowed to read."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(settings.LAYERLENS_ANONYMOUS_READ or (user and user.is_authenticated))
