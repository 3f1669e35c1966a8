"""``/api/jobs/``: users see their own jobs, admins see everyone's."""
from __future__ import annotations

import pytest
from factories import client_for

from webapp.jobs.models import Job

pytestmark = pytest.mark.django_db


def test_users_see_their_jobs_and_admins_see_all(clinician, admin_user_role, django_user_model):
    other = django_user_model.objects.create_user("other", password="other-pw-123")
    mine = Job.objects.create(kind=Job.Kind.INGEST, created_by=clinician, progress=40, message="4 of 10 files")
    theirs = Job.objects.create(kind=Job.Kind.ANALYZE, created_by=other)

    listing = client_for(clinician).get("/api/jobs/").json()
    assert listing["count"] == 1 and listing["results"][0]["id"] == mine.pk
    row = listing["results"][0]
    assert {"id", "kind", "status", "progress", "message", "error", "created_at"} <= set(row)
    assert row["progress"] == 40 and row["created_by"] == "clinician"
    assert client_for(clinician).get(f"/api/jobs/{theirs.pk}/").status_code == 404

    everyone = client_for(admin_user_role).get("/api/jobs/", {"kind": "analyze"}).json()
    assert [j["id"] for j in everyone["results"]] == [theirs.pk]
    assert client_for(admin_user_role).get(f"/api/jobs/{mine.pk}/").json()["status"] == "queued"


def test_admin_pages_for_the_archive_and_jobs_load(client, django_user_model, storage_dir, phantom_files):
    from webapp.studies.ingest import ingest_file

    ingest_file(phantom_files[0].read_bytes(), "a.dcm")
    Job.objects.create(kind=Job.Kind.INGEST)
    client.force_login(django_user_model.objects.create_superuser("root", password="root-pw-123"))
    for model in ("studies/patient", "studies/study", "studies/series", "studies/instance", "jobs/job"):
        assert client.get(f"/admin/{model}/").status_code == 200, model
