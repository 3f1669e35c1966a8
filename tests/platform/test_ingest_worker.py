"""A zip upload becomes an ingest job that a real Celery worker (a separate process) runs to completion."""
from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from factories import wait_for_job
from platform_helpers import assert_no_orphans, zip_of

from webapp.jobs.models import Job
from webapp.studies.models import Instance
from webapp.studies.tasks import ingest_upload

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_a_worker_ingests_an_uploaded_zip_and_reports_progress(api, start_worker, storage_dir, phantom_files):
    start_worker(queues="default")
    archive = zip_of({f"scan/{p.name}": p.read_bytes() for p in phantom_files} | {"scan/readme.txt": b"hi"})
    response = api.post("/api/uploads/", {"files": [SimpleUploadedFile("scan.zip", archive)]}, format="multipart")
    assert response.status_code == 202
    job = wait_for_job(Job.objects.get(pk=response.json()["jobs"][0]["id"]), timeout=90)
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == 100 and job.attempts == 1
    assert job.result["counts"] == {"stored": len(phantom_files), "duplicate": 0, "rejected": 1, "conflict": 0}
    assert Instance.objects.count() == len(phantom_files)
    assert not (storage_dir / job.params["upload"]).exists()  # the parked archive is cleaned up
    assert_no_orphans(storage_dir)

    detail = api.get(f"/api/jobs/{job.pk}/").json()
    assert detail["status"] == "succeeded" and detail["progress"] == 100 and detail["created_by"] == "clinician"


def test_running_the_job_twice_never_duplicates_rows(api, storage_dir, phantom_files, clinician):
    """acks_late may redeliver a job; the second run finds every file already stored."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    archive = zip_of({p.name: p.read_bytes() for p in phantom_files})
    for _delivery in range(2):
        path = default_storage.save("uploads/test/scan.zip", ContentFile(archive))
        job = Job.objects.create(kind=Job.Kind.INGEST, params={"upload": path, "name": "scan.zip"},
                                 created_by=clinician)
        ingest_upload.apply(args=[job.pk])
        job.refresh_from_db()
        assert job.status == Job.Status.SUCCEEDED
    assert job.result["counts"]["duplicate"] == len(phantom_files)
    assert Instance.objects.count() == len(phantom_files)
