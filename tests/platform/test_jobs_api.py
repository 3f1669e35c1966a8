"""``/api/jobs/``: users see their own jobs and the analyses of every study, admins see all jobs."""
from __future__ import annotations

import pytest
from factories import client_for

from webapp.accounts.roles import ANNOTATOR, assign_role
from webapp.analysis.models import AnalysisRun
from webapp.jobs.models import Job
from webapp.studies.models import Patient, Study

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


def test_everyone_follows_the_analyses_of_the_studies_they_see(clinician, admin_user_role, django_user_model):
    annotator = django_user_model.objects.create_user("anno", password="anno-pw-123")
    assign_role(annotator, ANNOTATOR)
    study = Study.objects.create(study_instance_uid="1.2.3.4", patient=Patient.objects.create(patient_id="P1"))
    automatic = Job.objects.create(kind=Job.Kind.ANALYZE, status=Job.Status.RUNNING, progress=55)  # on ingest
    AnalysisRun.objects.create(study=study, job=automatic, model_name="default")
    by_admin = Job.objects.create(kind=Job.Kind.ANALYZE, created_by=admin_user_role)  # a batch re-analysis
    AnalysisRun.objects.create(study=study, job=by_admin, model_name="default")
    Job.objects.create(kind=Job.Kind.EXPORT, created_by=admin_user_role)
    Job.objects.create(kind=Job.Kind.INGEST, created_by=admin_user_role, params={"name": "PATIENT-A.zip"})

    for user in (clinician, annotator):
        listing = client_for(user).get("/api/jobs/").json()
        assert sorted(j["id"] for j in listing["results"]) == sorted([automatic.pk, by_admin.pk]), user.username
        assert client_for(user).get(f"/api/jobs/{automatic.pk}/").json()["progress"] == 55
    assert client_for(admin_user_role).get("/api/jobs/").json()["count"] == 4


def test_admin_pages_for_the_archive_and_jobs_load(client, django_user_model, storage_dir, phantom_files):
    from webapp.studies.ingest import ingest_file

    ingest_file(phantom_files[0].read_bytes(), "a.dcm")
    Job.objects.create(kind=Job.Kind.INGEST)
    client.force_login(django_user_model.objects.create_superuser("root", password="root-pw-123"))
    for model in ("studies/patient", "studies/study", "studies/series", "studies/instance", "jobs/job"):
        assert client.get(f"/admin/{model}/").status_code == 200, model
