"""The three roles, as Django groups: membership is the role (the groups carry no Django model permissions).

Role rules live here once; the API permission classes (``accounts/permissions.py``) and the navigation template tag
ask ``has_role`` instead of checking group names themselves. Admins (superusers or the ``admin`` group) can do
everything the other two can.
"""
from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

CLINICIAN = "clinician"
ANNOTATOR = "annotator"
ADMIN = "admin"
ROLES = (CLINICIAN, ANNOTATOR, ADMIN)


def roles_of(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    """The role names a user holds; superusers hold all of them."""
    if not user or not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(ROLES)
    cached = getattr(user, "_lungscope_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if ADMIN in cached:
            cached = set(ROLES)
        user._lungscope_roles = cached
    return cached


def has_role(user: AbstractBaseUser | AnonymousUser, role: str) -> bool:
    return role in roles_of(user)


def ensure_role_groups() -> None:
    """Create the role groups (idempotent; runs after every migrate)."""
    from django.contrib.auth.models import Group

    for role in ROLES:
        Group.objects.get_or_create(name=role)


def assign_role(user, role: str) -> None:
    """Give ``user`` exactly one role group."""
    from django.contrib.auth.models import Group

    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    ensure_role_groups()
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    user.groups.add(Group.objects.get(name=role))
    user.__dict__.pop("_lungscope_roles", None)
