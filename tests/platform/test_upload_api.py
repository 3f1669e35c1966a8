"""``POST /api/uploads/``: per-file results, status codes, zip hand-off to a job, and the page at ``/``."""
from __future__ import annotations

import csv

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from platform_helpers import assert_no_orphans, zip_of
from rest_framework.test import APIClient

from webapp.jobs.models import Job
from webapp.studies.models import Instance

pytestmark = pytest.mark.django_db

NON_CT_MODALITIES = {"MR", "US", "CR", "NM", "OT"}


def upload(api, files: dict[str, bytes]):
    return api.post("/api/uploads/", {"files": [SimpleUploadedFile(n, d) for n, d in files.items()]},
                    format="multipart")


def test_a_folder_upload_returns_one_result_per_file(api, storage_dir, phantom_files, clinician):
    response = upload(api, {p.name: p.read_bytes() for p in phantom_files})
    assert response.status_code == 201
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["stored"] * len(phantom_files)
    assert set(results[0]) == {"name", "status", "reason", "sop_instance_uid", "study_instance_uid"}
    assert Instance.objects.filter(uploaded_by=clinician).count() == len(phantom_files)
    again = upload(api, {phantom_files[0].name: phantom_files[0].read_bytes()})
    assert again.status_code == 200 and again.json()["results"][0]["status"] == "duplicate"


def test_nothing_landed_is_a_400_with_reasons(api, storage_dir):
    response = upload(api, {"notes.txt": b"not dicom at all"})
    assert response.status_code == 400
    assert response.json()["results"][0] == {"name": "notes.txt", "status": "rejected", "sop_instance_uid": "",
                                             "study_instance_uid": "",
                                             "reason": "not a DICOM file (no DICM prefix or file meta information)"}
    assert upload(api, {}).status_code == 400  # no files at all: a validation error, not a crash


def test_every_dicom_variant_is_stored_or_rejected_with_a_reason(api, storage_dir, shared_data):
    root = shared_data / "dicom-variants"
    manifest = {row["path"]: row for row in csv.DictReader((root / "manifest.csv").open())}
    files = {path: (root / path).read_bytes() for path in manifest}
    response = upload(api, {path.replace("/", "__"): data for path, data in files.items()})
    assert response.status_code == 201
    by_name = {r["name"].replace("__", "/"): r for r in response.json()["results"]}
    assert set(by_name) == set(manifest)
    for path, result in by_name.items():
        assert result["status"] in {"stored", "duplicate", "rejected", "conflict"}, path
        if result["status"] in {"rejected", "conflict"}:
            assert result["reason"], path
        if manifest[path]["modality"] in NON_CT_MODALITIES:
            assert result["status"] == "rejected", path
    for path in ("ct/CT_small.dcm", "ct/693_J2KR.dcm", "ct/eCT_Supplemental.dcm", "ct/bad_sequence.dcm"):
        assert by_name[path]["status"] == "stored", (path, by_name[path]["reason"])
    assert "truncated" in by_name["ts_variants/emri_small_jpeg_2k_lossless_too_short.dcm"]["reason"]
    assert_no_orphans(storage_dir)


def test_a_zip_becomes_an_ingest_job(api, storage_dir, phantom_files, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        response = upload(api, {"series.zip": zip_of({p.name: p.read_bytes() for p in phantom_files}),
                                phantom_files[0].name: phantom_files[0].read_bytes()})
    assert response.status_code == 202
    body = response.json()
    assert body["results"][0]["status"] == "stored" and len(body["jobs"]) == 1
    job = Job.objects.get(pk=body["jobs"][0]["id"])
    assert job.kind == "ingest" and job.status == "queued" and (storage_dir / job.params["upload"]).is_file()
    assert len(callbacks) == 1  # the job is queued only once its row is committed


@pytest.mark.parametrize("url", ["/api/uploads/", "/api/jobs/", "/dicomweb/studies", "/wado?requestType=WADO"])
def test_anonymous_requests_are_refused(url):
    response = APIClient().get(url)
    assert response.status_code in (401, 403)


def test_pages_need_login(client):
    assert client.get("/").status_code == 302
    assert client.get("/accounts/login/").status_code == 200
