"""API shapes of the signed-in user and of user-role management."""
from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Prefetch
from rest_framework import serializers

from webapp.core.audit import record

from .roles import ADMIN, ROLES, ensure_role_groups, roles_of


def role_groups() -> Prefetch:
    """Prefetch of the role groups only, which ``UserSerializer`` lists without a query per user."""
    return Prefetch("groups", queryset=Group.objects.filter(name__in=ROLES))


class MeSerializer(serializers.Serializer):
    username = serializers.CharField(read_only=True)
    roles = serializers.SerializerMethodField(help_text="Effective roles: admins and superusers hold all three.")

    def get_roles(self, user) -> list[str]:
        return sorted(roles_of(user))


class RoleListField(serializers.ListField):
    """The role groups assigned to a user, read from the prefetched ``groups`` (``role_groups``): no query per row."""

    child = serializers.ChoiceField(choices=ROLES)

    def get_attribute(self, user) -> list[str]:
        return sorted(group.name for group in user.groups.all())


class UserSerializer(serializers.ModelSerializer):
    """A user as admins manage them. ``roles`` are the role groups assigned (PATCH replaces them)."""

    roles = RoleListField(allow_empty=True)
    email = serializers.CharField(read_only=True)  # often blank, and "" is no valid ``format: email`` value

    class Meta:
        model = get_user_model()
        fields = ["id", "username", "first_name", "last_name", "email", "is_active", "is_superuser", "last_login",
                  "roles"]
        read_only_fields = ["id", "username", "first_name", "last_name", "email", "is_active", "is_superuser",
                            "last_login"]

    def validate_roles(self, roles: list[str]) -> list[str]:
        user, actor = self.instance, self.context["request"].user
        if user is not None and user.pk == actor.pk and ADMIN not in roles and not user.is_superuser:
            raise serializers.ValidationError("You cannot remove your own admin role; ask another admin.")
        return sorted(set(roles))

    def update(self, user, validated_data: dict[str, Any]):
        roles = validated_data.get("roles")
        if roles is None:
            return user
        before = sorted(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if roles != before:
            ensure_role_groups()
            with transaction.atomic():
                user.groups.remove(*Group.objects.filter(name__in=set(ROLES) - set(roles)))
                user.groups.add(*Group.objects.filter(name__in=roles))
                record(actor=self.context["request"].user, action="user.roles", obj=user, study_id=None,
                       before={"roles": before}, after={"roles": roles})
            user.__dict__.pop("_lungscope_roles", None)
        return get_user_model().objects.prefetch_related(role_groups()).get(pk=user.pk)
