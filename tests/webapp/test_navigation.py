"""The header's navigation by role, rendered by the pages themselves (the browser tests click through it)."""
from __future__ import annotations

import re

import pytest
from django.test import Client



pytestmark = pytest.mark.django_db


def nav(user, path: str = "/") -> list[tuple[str, str, bool]]:
    """(href, text, current) of the header's links on ``path``."""
    client = Client()
    client.force_login(user)
    response = client.get(path)
    assert response.status_code == 200, response.status_code
    block = re.search(r'<nav class="site-nav".*?</nav>', response.content.decode(), re.S).group(0)
    return [(href, text, bool(current)) for href, current, text in
            re.findall(r'<a href="([^"]+)"( aria-current="page")?>([^<]+)</a>', block)]


def test_clinicians_and_annotators_get_the_worklist_and_the_api_docs(users):
    for user in (users.clinician, users.annotator):
        assert nav(user) == [("/", "Worklist", True), ("/api/docs/", "API docs", False)]


def test_admins_get_curation_and_the_registry_and_staff_the_django_admin(users):
    boss = users.admin
    assert [text for _, text, _ in nav(boss)] == ["Worklist", "Curation", "Model registry", "API docs"]
    boss.is_staff = True
    boss.save(update_fields=["is_staff"])
    links = nav(boss, "/registry/")
    assert links == [("/", "Worklist", False), ("/curation/", "Curation", False),
                     ("/registry/", "Model registry", True), ("/admin/", "Django admin", False),
                     ("/api/docs/", "API docs", False)]


def test_signed_out_pages_have_no_navigation(client):
    response = client.get("/accounts/login/")
    assert response.status_code == 200 and b"site-nav" not in response.content
