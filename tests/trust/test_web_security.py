"""Web security: CSRF, cookie flags and HSTS outside debug, security headers, login throttling, request size
limits, no patient names in logs, and ``check --deploy`` clean for the production settings."""
from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from factories import ingest_phantom, make_tiny_bundle, make_user

from webapp.analysis.tasks import analyze_study, enqueue_analysis
from webapp.studies.models import Instance

REPO = Path(__file__).resolve().parents[2]
SECRET_NAME = "SECRETNAME^PATIENT"


def production_env() -> dict[str, str]:
    # Without the suite's own settings: its test-run id, and the browser tests' DJANGO_ALLOW_ASYNC_UNSAFE.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LUNGSCOPE_TEST") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DJANGO_DEBUG="0", LUNGSCOPE_PLAIN_HTTP="0", DJANGO_SECRET_KEY=secrets.token_urlsafe(64),
               DJANGO_ALLOWED_HOSTS="ct.example.org", DJANGO_SETTINGS_MODULE="webapp.settings.production")
    return env


def test_check_deploy_is_clean_for_production_settings():
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=REPO, env=production_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_cookies_are_secure_and_hsts_is_on_outside_debug():
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SESSION_COOKIE_HTTPONLY, s.SECURE_HSTS_SECONDS > 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env=production_env())
    assert result.stdout.split() == ["True"] * 4, result.stderr


def test_refuses_to_start_without_a_secret_key_outside_debug():
    env = {**production_env(), "DJANGO_SECRET_KEY": ""}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr


@pytest.mark.django_db
def test_security_headers_on_pages_and_api(client):
    for url in ("/accounts/login/", "/api/me/"):
        response = client.get(url)
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
        assert response["Cross-Origin-Opener-Policy"] == "same-origin"


@pytest.mark.django_db
def test_session_authenticated_writes_need_the_csrf_token():
    user = make_user("csrf-clinician", "clinician")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    response = client.post("/api/uploads/", {"files": SimpleUploadedFile("x.dcm", b"not dicom")})
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]

    client.get("/accounts/login/")  # sets the csrftoken cookie, as the pages do
    token = client.cookies["csrftoken"].value
    response = client.post("/api/uploads/", {"files": SimpleUploadedFile("x.dcm", b"not dicom")},
                           HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 400  # past CSRF: rejected for what it is, not DICOM


@pytest.mark.django_db
def test_login_is_throttled_after_repeated_failures(client):
    username = f"throttled-{uuid.uuid4().hex[:8]}"  # the counter lives in the shared cache: start from zero
    make_user(username, "clinician")
    statuses = [client.post("/accounts/login/", {"username": username, "password": "wrong"}).status_code
                for _ in range(6)]
    assert statuses[:5] == [200] * 5 and statuses[5] == 429
    locked = client.post("/accounts/login/", {"username": username, "password": f"{username}-pass"})
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_oversized_request_is_refused_before_it_is_read(settings, client, storage_dir):
    settings.LUNGSCOPE_MAX_UPLOAD_BYTES = 4096
    client.force_login(make_user("big-uploader", "clinician"))
    response = client.post("/api/uploads/", {"files": SimpleUploadedFile("big.dcm", b"\0" * 10_000)})
    assert response.status_code == 413 and "exceeds the 4096 byte limit" in response.json()["detail"]
    assert not Instance.objects.exists() and not any(storage_dir.rglob("*.dcm"))


@pytest.mark.django_db
def test_no_patient_names_in_logs(caplog, tmp_path, settings, storage_dir):
    settings.LUNGSCOPE_MODEL = str(make_tiny_bundle(tmp_path / "bundle"))
    settings.LUNGSCOPE_SALIENCY = "none"
    caplog.set_level(logging.DEBUG)
    study = ingest_phantom(tmp_path, "CAP", seed=5, n_slices=8, size=64, PatientName=SECRET_NAME)
    assert study.patient.name == SECRET_NAME
    job = enqueue_analysis(study)
    analyze_study.apply(args=[job.params["analysis_run_id"]])
    client = Client()
    client.force_login(make_user("log-clinician", "clinician"))
    assert client.get("/api/studies/").status_code == 200
    assert client.get(f"/api/studies/{study.pk}/").status_code == 200
    client.post("/api/uploads/", {"files": SimpleUploadedFile("bad.dcm", b"garbage")})
    assert caplog.records, "expected the run to log something"
    assert "SECRETNAME" not in caplog.text
