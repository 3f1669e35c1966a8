"""Fixtures for the platform tests: users with API tokens, phantom and real DICOM files, storage inspection."""
from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from webapp.accounts.roles import ADMIN, CLINICIAN, assign_role


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Users are created per test; the production hasher's cost buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def clinician(django_user_model):
    user = django_user_model.objects.create_user("clinician", password="clinician-pw")
    assign_role(user, CLINICIAN)
    return user


@pytest.fixture
def admin_user_role(django_user_model):
    user = django_user_model.objects.create_user("boss", password="boss-pw-123")
    assign_role(user, ADMIN)
    return user


@pytest.fixture
def token(clinician) -> str:
    return Token.objects.create(user=clinician).key


@pytest.fixture
def api(token) -> APIClient:
    """An API client authenticated the way scripts are: a DRF token header."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory) -> Path:
    """A small synthetic chest CT series (8 slices of 64 x 64) written once per session."""
    from training.phantom import generate_study, write_dicom_series

    out = tmp_path_factory.mktemp("phantom")
    write_dicom_series(generate_study(7, "COVID", size=64, n_slices=8), out)
    return out


@pytest.fixture
def phantom_files(phantom_dir) -> list[Path]:
    return sorted(phantom_dir.glob("*.dcm"))
