"""Fixtures of the webapp tests: people with roles, API clients, a tiny analysing bundle. The factories they use
are in review_factories.py, curation_factories.py and ../factories.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from curation_factories import People, make_people
from django.contrib.auth import get_user_model
from factories import client_for, make_finding_bundle
from rest_framework.test import APIClient

from webapp.accounts.roles import ADMIN, ANNOTATOR, CLINICIAN, assign_role


@dataclass
class Users:
    clinician: object
    clinician2: object
    annotator: object
    annotator2: object
    admin: object


@pytest.fixture
def users(db) -> Users:
    def make(name: str, role: str):
        user = get_user_model().objects.create_user(name)  # no password: hashing is slow, clients are forced
        assign_role(user, role)
        return user

    return Users(make("clin", CLINICIAN), make("clin2", CLINICIAN), make("anno", ANNOTATOR),
                 make("anno2", ANNOTATOR), make("boss", ADMIN))


@pytest.fixture
def people(db) -> People:
    return make_people()


@pytest.fixture
def tiny_bundle(tmp_path, settings) -> Path:
    settings.LUNGSCOPE_MODEL = str(make_finding_bundle(tmp_path / "tiny"))
    return Path(settings.LUNGSCOPE_MODEL)


@pytest.fixture
def clinician() -> APIClient:
    user = get_user_model().objects.create_user("doc", password="doc-password-1")
    assign_role(user, CLINICIAN)
    return client_for(user)


@pytest.fixture
def annotator() -> APIClient:
    user = get_user_model().objects.create_user("ann", password="ann-password-1")
    assign_role(user, ANNOTATOR)
    return client_for(user)
