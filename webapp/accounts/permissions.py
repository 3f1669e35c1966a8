"""DRF permission classes for the roles: one per rule, named for what it allows."""
from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from .roles import ADMIN, ANNOTATOR, CLINICIAN, has_role


class _RoleRequired(BasePermission):
    role = ADMIN
    message = "This action needs the admin role."

    def has_permission(self, request, view) -> bool:
        return bool(request.user and request.user.is_authenticated and has_role(request.user, self.role))


class IsAdmin(_RoleRequired):
    role = ADMIN
    message = "This action needs the admin role."


class IsClinician(_RoleRequired):
    role = CLINICIAN
    message = "Only clinicians decide diagnoses."


class IsAnnotator(_RoleRequired):
    role = ANNOTATOR
    message = "Only annotators edit boxes."


class ReadAnyWrite(BasePermission):
    """Any signed-in user may read; writes need the role set on the view as ``write_role``."""

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        if request.method in SAFE_METHODS:
            return True
        return has_role(request.user, getattr(view, "write_role", ADMIN))
