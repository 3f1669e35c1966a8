"""An annotator never sees patient identity.

One study whose patient name and id are unique markers, analysed, decided and annotated; then every page, API
response, DICOMweb response (QIDO-RS at each level, WADO-RS metadata, instances and frames, WADO-URI) and export
URL of the URL conf, fetched as an annotator and searched byte for byte, bodies (pixel data included) and headers,
for either marker. The same walk as a clinician finds them where identity belongs, so the walk does reach it.
"""
from __future__ import annotations

import pytest
from django.test import Client
from factories import ingest_phantom, make_tiny_bundle
from test_permissions_matrix import PUBLIC, RULES, app_endpoints, url_of

from webapp.accounts.roles import ANNOTATOR, CLINICIAN
from webapp.analysis.models import AnalysisRun, SliceResult
from webapp.analysis.tasks import analyze_study, enqueue_analysis
from webapp.jobs.models import Job
from webapp.review.models import Box
from webapp.studies.models import Instance

NAME, PATIENT_ID = "ZQXNAMEMARK^PRIVACY", "ZQXIDMARK-4417"
MARKERS = (b"ZQXNAMEMARK", b"ZQXIDMARK")

DICOM_PARTS = 'multipart/related; type="application/dicom"'
FRAME_PARTS = 'multipart/related; type="application/octet-stream"'
MAP_KINDS = ("joint", "conv3", "conv4", "conv5", "cam3", "cam4", "cam5", "lung")


@pytest.fixture
def study_in_review(role_users, tmp_path, settings, storage_dir):
    """The marked study, analysed by a small model that explains every slice, with a decision and a human box (and
    their audit events); the rest of the world is conftest's."""
    settings.LUNGSCOPE_MODEL = str(make_tiny_bundle(tmp_path / "bundle", favour="COVID"))
    settings.LUNGSCOPE_SALIENCY = "all"
    study = ingest_phantom(tmp_path, "COVID", seed=3, n_slices=4, size=64, PatientName=NAME, PatientID=PATIENT_ID)
    assert (study.patient.name, study.patient.patient_id) == (NAME, PATIENT_ID)
    job = enqueue_analysis(study, role_users[CLINICIAN])
    analyze_study.apply(args=[job.params["analysis_run_id"]])
    run = AnalysisRun.objects.get(study=study)
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert SliceResult.objects.filter(run=run).exists() and Job.objects.filter(pk=job.pk).exists()
    instance = Instance.objects.filter(series__study=study).first()

    clinician, annotator = Client(), Client()
    clinician.force_login(role_users[CLINICIAN])
    annotator.force_login(role_users[ANNOTATOR])
    decided = clinician.put(f"/api/studies/{study.pk}/decision/", {"label": "covid", "comment": "looked"},
                            content_type="application/json")
    assert decided.status_code in (200, 201), decided.content
    drawn = annotator.post(f"/api/studies/{study.pk}/boxes/", {
        "sop_instance_uid": instance.sop_instance_uid, "x0": 2, "y0": 2, "x1": 20, "y1": 20,
        "label": Box.Label.COVID_LESION}, content_type="application/json")
    assert drawn.status_code == 201, drawn.content
    return study, run, drawn.json()["id"], job


def requests_to_make(ids: dict, uids: dict) -> list[tuple[str, dict]]:
    """(url, headers) for every GET of the URL conf, plus the DICOMweb variants a viewer or client uses."""
    wanted: list[tuple[str, dict]] = [("/accounts/login/", {}), ("/admin/", {})]
    for endpoint in app_endpoints():
        rule = RULES[endpoint.name]
        if rule != PUBLIC and "GET" in rule:
            wanted.append((url_of(endpoint, ids, uids), {}))
    study, series, instance = uids["study"], uids["series"], uids["instance"]
    base = f"/dicomweb/studies/{study}"
    for level in ("/dicomweb/studies", "/dicomweb/series", "/dicomweb/instances", f"{base}/series",
                  f"{base}/instances", f"{base}/series/{series}/instances"):
        wanted.append((f"{level}?includefield=all", {}))
    for url in (base, f"{base}/series/{series}", f"{base}/series/{series}/instances/{instance}"):
        wanted += [(url, {"HTTP_ACCEPT": DICOM_PARTS}), (f"{url}/metadata", {"HTTP_ACCEPT": "application/dicom+json"})]
    wanted.append((f"{base}/series/{series}/instances/{instance}/frames/1", {"HTTP_ACCEPT": FRAME_PARTS}))
    wanted.append((f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={instance}"
                   "&contentType=application%2Fdicom", {}))
    wanted += [(f"/api/analysis-runs/{ids['run']}/slices/{index}/maps/{kind}.png", {})
               for index in range(2) for kind in MAP_KINDS]
    wanted += [(f"/api/studies/?search={PATIENT_ID}", {}), (f"/api/jobs/{ids['job']}/", {})]
    return wanted


def walk(user, ids: dict, uids: dict) -> dict[str, tuple[int, bytes]]:
    """url -> (status, everything the response said: headers and body)."""
    client = Client()
    client.force_login(user)
    seen = {}
    for url, headers in requests_to_make(ids, uids):
        response = client.get(url, **headers)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        said = "\n".join(f"{k}: {v}" for k, v in response.headers.items()).encode() + b"\n\n" + body
        seen[f"{url} [{headers.get('HTTP_ACCEPT', '')}]"] = (response.status_code, said)
    return seen


def leaking(seen: dict[str, tuple[int, bytes]]) -> list[str]:
    return [url for url, (_, said) in seen.items() if any(marker in said.upper() for marker in MARKERS)]


def test_an_annotator_finds_no_patient_identity_anywhere(world):
    users, ids, uids = world
    seen = walk(users[ANNOTATOR], ids, uids)
    assert [url for url, (status, _) in seen.items() if status >= 500] == []
    assert leaking(seen) == []
    # The walk did get the answers that hold identity for others, not refusals.
    must_answer = ("/api/studies/", f"/api/studies/{ids['study']}/", f"/studies/{ids['study']}/", "/wado?",
                   "/metadata", "/dicomweb/studies?", "/frames/1")
    for part in must_answer:
        answered = [url for url, (status, _) in seen.items() if part in url and status == 200]
        assert answered, f"no 200 answer for {part}"
    title = seen[f"/studies/{ids['study']}/ []"][1]
    assert b"<title>\xe2\x80\xa2\xe2\x80\xa2\xe2\x80\xa2 \xc2\xb7 lungscope</title>" in title  # the mask
    # Exports and the audit log are beyond an annotator's reach.
    assert all(status == 403 for url, (status, _) in seen.items() if "/api/exports/" in url or url.startswith(
        "/api/audit/"))


def test_the_same_walk_as_a_clinician_meets_the_identity(world):
    users, ids, uids = world
    leaks = leaking(walk(users[CLINICIAN], ids, uids))
    for part in (f"/studies/{ids['study']}/ []", "/api/studies/ []", f"/api/studies/{ids['study']}/ []",
                 "/dicomweb/studies?includefield=all", f"/dicomweb/studies/{uids['study']} [multipart",
                 f"/instances/{uids['instance']}/metadata", "/wado?", f"/api/studies/?search={PATIENT_ID}"):
        assert any(part in url for url in leaks), f"{part} shows a clinician no identity: {leaks}"


def test_identity_is_not_searchable_for_an_annotator(world):
    users, ids, uids = world
    client = Client()
    client.force_login(users[ANNOTATOR])
    everything = client.get("/dicomweb/studies").json()
    for query in (f"PatientID={PATIENT_ID}", "PatientID=NOBODY", "PatientName=ZQX*", "PatientName=NOBODY*"):
        answer = client.get(f"/dicomweb/studies?{query}")
        assert answer.json() == everything, query  # a match and a miss look the same: no oracle
        assert "patient identity is not searchable" in answer["Warning"]
    clinician = Client()
    clinician.force_login(users[CLINICIAN])
    assert clinician.get("/dicomweb/studies?PatientID=NOBODY").json() == []
    assert len(clinician.get(f"/dicomweb/studies?PatientID={PATIENT_ID}").json()) == 1
