"""Accounts: /api/me/, admin-only user-role management (audited), and the sign-in lockout."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.urls import include, path
from rest_framework.test import APIClient

from factories import client_for
from webapp.accounts.roles import roles_of
from webapp.accounts.views import LOGIN_MAX_FAILURES, ThrottledLoginView
from webapp.review.models import AuditEvent

pytestmark = pytest.mark.django_db

# The lockout view beside the app's own URLs (its template reverses them); webapp/urls.py mounts it for real.
urlpatterns = [path("throttled-login/", ThrottledLoginView.as_view()), path("", include("webapp.urls"))]


def test_me_returns_username_and_effective_roles(users):
    assert client_for(users.annotator).get("/api/me/").json() == {"username": "anno", "roles": ["annotator"]}
    assert client_for(users.admin).get("/api/me/").json()["roles"] == ["admin", "annotator", "clinician"]
    assert APIClient().get("/api/me/").status_code in (401, 403)


def test_admins_list_users_with_their_assigned_roles(users, django_assert_max_num_queries):
    admin = client_for(users.admin)
    admin.get("/api/me/")  # roles cached on the user
    with django_assert_max_num_queries(3):
        listed = admin.get("/api/users/?limit=100").json()["results"]
    assert {u["username"]: u["roles"] for u in listed} == {
        "anno": ["annotator"], "anno2": ["annotator"], "boss": ["admin"], "clin": ["clinician"], "clin2": ["clinician"]}
    assert [u["username"] for u in admin.get("/api/users/?search=clin").json()["results"]] == ["clin", "clin2"]
    for user in (users.clinician, users.annotator):
        assert client_for(user).get("/api/users/").status_code == 403
        assert client_for(user).patch(f"/api/users/{user.pk}/", {"roles": ["admin"]}, format="json").status_code == 403


def test_role_change_is_applied_and_audited(users):
    response = client_for(users.admin).patch(f"/api/users/{users.annotator.pk}/",
                                             {"roles": ["clinician", "annotator"]}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["roles"] == ["annotator", "clinician"]
    user = get_user_model().objects.get(pk=users.annotator.pk)
    assert roles_of(user) == {"annotator", "clinician"}
    event = AuditEvent.objects.get()
    assert (event.action, event.actor, event.object_type, event.object_id) == (
        "user.roles", users.admin, "user", str(user.pk))
    assert (event.before, event.after) == ({"roles": ["annotator"]}, {"roles": ["annotator", "clinician"]})

    again = client_for(users.admin).patch(f"/api/users/{user.pk}/", {"roles": ["annotator", "clinician"]},
                                          format="json")
    assert again.status_code == 200 and AuditEvent.objects.count() == 1  # no change, no event


def test_bad_role_changes_are_400(users):
    admin = client_for(users.admin)
    bad = admin.patch(f"/api/users/{users.clinician.pk}/", {"roles": ["surgeon"]}, format="json")
    assert bad.status_code == 400 and "roles" in bad.json()
    own = admin.patch(f"/api/users/{users.admin.pk}/", {"roles": ["clinician"]}, format="json")
    assert own.status_code == 400 and "own admin role" in own.json()["roles"][0]
    assert admin.patch(f"/api/users/{users.clinician.pk}/", {"roles": "admin"}, format="json").status_code == 400
    assert admin.patch("/api/users/999999/", {"roles": []}, format="json").status_code == 404
    assert not AuditEvent.objects.exists()


@pytest.mark.urls(__name__)
def test_login_locks_a_username_and_address_after_repeated_failures(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()
    get_user_model().objects.create_user("doc", password="right-password")
    client = APIClient()  # a plain Django test client with REMOTE_ADDR 127.0.0.1

    def login(password: str, username: str = "doc", address: str = "127.0.0.1"):
        return client.post("/throttled-login/", {"username": username, "password": password}, REMOTE_ADDR=address)

    assert login("right-password").status_code == 302
    for _ in range(LOGIN_MAX_FAILURES):
        assert login("wrong").status_code == 200
    locked = login("right-password")  # even the right password is not tried any more
    assert locked.status_code == 429 and int(locked["Retry-After"]) > 0
    assert "Too many failed sign-ins" in str(locked.context["form"].non_field_errors())
    assert login("right-password", username="DOC").status_code == 429  # usernames compare case-insensitively
    assert login("right-password", address="10.0.0.9").status_code == 302  # another address is not locked out
    assert login("wrong", username="other").status_code == 200
