"""An annotator never sees patient identity.

One study whose patient name and id are unique markers, analysed, decided and annotated; then every page, API
response, DICOMweb response (QIDO-RS at each level, WADO-RS metadata, instances and frames, WADO-URI) and export
URL of the URL conf, fetched as an annotator and searched byte for byte, bodies (pixel data included) and headers,
for either marker. The same walk as a clinician finds them where identity belongs, so the walk does reach it.
"""
from __future__ import annotations

import pytest
from django.test import Client
from factories import ingest_phantom, make_tiny_bundle, make_user
from test_permissions_matrix import ADMIN, ANNOTATOR, CLINICIAN, PUBLIC, RULES, app_endpoints, url_of

from webapp.analysis.models import AnalysisRun, SliceResult
from webapp.analysis.tasks import analyze_study, enqueue_analysis
from webapp.curation.models import DatasetVersion, Export
from webapp.dicomnode.models import Delivery, DicomPeer, WebDestination
from webapp.jobs.models import Job
from webapp.registry.models import ModelVersion, TrainingRun
from webapp.review.models import Box
from webapp.studies.models import Instance

NAME, PATIENT_ID = "ZQXNAMEMARK^PRIVACY", "ZQXIDMARK-4417"
MARKERS = (b"ZQXNAMEMARK", b"ZQXIDMARK")

DICOM_PARTS = 'multipart/related; type="application/dicom"'
FRAME_PARTS = 'multipart/related; type="application/octet-stream"'
MAP_KINDS = ("joint", "conv3", "conv4", "conv5", "cam3", "cam4", "cam5", "lung")


@pytest.fixture
def world(db, tmp_path, settings, storage_dir):
    """The marked study, analysed by a small model that explains every slice, with a decision, a human box, their
    audit events, an analysis job, one of every curation and registry object, and a DICOM peer, a DICOMweb
    destination and a delivery of the results."""
    settings.LUNGSCOPE_MODEL = str(make_tiny_bundle(tmp_path / "bundle", favour="COVID"))
    settings.LUNGSCOPE_SALIENCY = "all"
    users = {role: make_user(f"p-{role}", role) for role in (CLINICIAN, ANNOTATOR, ADMIN)}
    study = ingest_phantom(tmp_path, "COVID", seed=3, n_slices=4, size=64, PatientName=NAME, PatientID=PATIENT_ID)
    assert (study.patient.name, study.patient.patient_id) == (NAME, PATIENT_ID)
    job = enqueue_analysis(study, users[CLINICIAN])
    analyze_study.apply(args=[job.params["analysis_run_id"]])
    run = AnalysisRun.objects.get(study=study)
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    instance = Instance.objects.filter(series__study=study).select_related("series").first()

    clinician, annotator = Client(), Client()
    clinician.force_login(users[CLINICIAN])
    annotator.force_login(users[ANNOTATOR])
    decided = clinician.put(f"/api/studies/{study.pk}/decision/", {"label": "covid", "comment": "looked"},
                            content_type="application/json")
    assert decided.status_code in (200, 201), decided.content
    drawn = annotator.post(f"/api/studies/{study.pk}/boxes/", {
        "sop_instance_uid": instance.sop_instance_uid, "x0": 2, "y0": 2, "x1": 20, "y1": 20,
        "label": Box.Label.COVID_LESION}, content_type="application/json")
    assert drawn.status_code == 201, drawn.content

    dataset = DatasetVersion.objects.create(name="dv", fingerprint="0" * 64, created_by=users[ADMIN])
    export = Export.objects.create(dataset_version=dataset, format=Export.Format.CSV, created_by=users[ADMIN])
    model = ModelVersion.objects.create(name="tiny", version="1", bundle_path="/nonexistent", sha256="0" * 64,
                                        classes=["NP", "CAP", "COVID"])
    training = TrainingRun.objects.create(dataset_version=dataset, config={})
    peer = DicomPeer.objects.create(ae_title="PACS", host="pacs.local", port=104, is_destination=True)
    web = WebDestination.objects.create(name="pacs-web", url="http://pacs.local/dicom-web")
    Delivery.objects.create(study=study, run=run, peer=peer, target="PACS@pacs.local:104",
                            status=Delivery.Status.SENT)
    ids = {"study": study.pk, "box": drawn.json()["id"], "run": run.pk, "job": job.pk, "dataset": dataset.pk,
           "export": export.pk, "model": model.pk, "training": training.pk, "user": users[ANNOTATOR].pk,
           "peer": peer.pk, "web": web.pk}
    uids = {"study": study.study_instance_uid, "series": instance.series.series_instance_uid,
            "instance": instance.sop_instance_uid, "frames": "1"}
    assert SliceResult.objects.filter(run=run).exists() and Job.objects.filter(pk=job.pk).exists()
    return users, ids, uids


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
