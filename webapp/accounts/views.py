"""Accounts: who am I, user-role management for admins, and sign-in with a lockout after repeated failures."""
from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from rest_framework import generics

from .permissions import IsAdmin
from .serializers import MeSerializer, UserSerializer, role_groups

#: Failed sign-ins allowed per username and client address within the window, before the lockout.
LOGIN_MAX_FAILURES = getattr(settings, "LUNGSCOPE_LOGIN_MAX_FAILURES", 5)
LOGIN_WINDOW_S = getattr(settings, "LUNGSCOPE_LOGIN_WINDOW_S", 15 * 60)


class MeView(generics.RetrieveAPIView):
    """``GET /api/me/``: the signed-in user's name and effective roles, for the UI to show the right tools."""

    serializer_class = MeSerializer

    def get_object(self):
        return self.request.user


class UserListView(generics.ListAPIView):
    serializer_class = UserSerializer
    permission_classes = [IsAdmin]
    search_fields = ["username", "first_name", "last_name", "email"]
    ordering_fields = ["username", "last_login"]
    ordering = ["username"]

    def get_queryset(self):
        return get_user_model().objects.prefetch_related(role_groups())


class UserDetailView(generics.RetrieveUpdateAPIView):
    """``PATCH /api/users/{id}/ {roles: [...]}``: replace a user's role groups (audited)."""

    serializer_class = UserSerializer
    permission_classes = [IsAdmin]
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        return get_user_model().objects.prefetch_related(role_groups())


def _failure_key(request, username: str) -> str:
    client = f"{username.strip().lower()}\0{request.META.get('REMOTE_ADDR', '')}"
    return "login-failures:" + hashlib.sha256(client.encode()).hexdigest()


class ThrottledAuthenticationForm(AuthenticationForm):
    """Refuses to even try the password once a username+address pair has failed too often in the window.

    Counting happens in the cache (fixed window from the first failure); a successful sign-in clears it.
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        "locked": "Too many failed sign-ins. Sign-in for this account from your address is locked for up to "
                  "%(minutes)d minutes.",
    }

    def clean(self):
        key = _failure_key(self.request, self.data.get("username") or "")
        if cache.get(key, 0) >= LOGIN_MAX_FAILURES:
            raise ValidationError(self.error_messages["locked"], code="locked",
                                  params={"minutes": -(-LOGIN_WINDOW_S // 60)})
        try:
            cleaned = super().clean()
        except ValidationError:
            cache.add(key, 0, timeout=LOGIN_WINDOW_S)
            cache.incr(key)
            raise
        cache.delete(key)
        return cleaned


class ThrottledLoginView(auth_views.LoginView):
    """Django's login page with the lockout; a locked attempt answers 429 with the message on the form."""

    authentication_form = ThrottledAuthenticationForm

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error(NON_FIELD_ERRORS, "locked"):
            response.status_code = 429
            response["Retry-After"] = str(LOGIN_WINDOW_S)
        return response
