"""The whole loop on phantom studies, through the API and real Celery workers:

ingest -> AI analysis (tiny random bundle) -> clinicians confirm/correct, annotators accept/edit/reject/add boxes
-> a dataset version -> every export format (downloaded, de-identification checked) -> a tiny training run -> a
new model version with held-out metrics beside the active one -> promote -> a re-analysis records the new version
-> rollback; and a second training run cancelled mid-way.

Nine 6-slice 64-pixel phantoms (three per class: retrain's patient-grouped train/validation/test split needs that
many); saliency (the slow part of an analysis) only for two of them, which is where the AI boxes come from.
"""
from __future__ import annotations

import io
import time
import zipfile

import pytest
import torch

from inference.bundle import save_bundle
from inference.classifier import MultiScaleVGG
from test_curation import assert_no_identity
from factories import client_for
from curation_factories import make_people, phantom_files
from webapp.analysis.models import AnalysisRun
from webapp.jobs.models import Job
from webapp.registry import services
from webapp.registry.models import ModelVersion, TrainingRun
from webapp.review.models import AuditEvent, Box
from webapp.studies.models import Study

pytestmark = [pytest.mark.worker, pytest.mark.slow]
TRAIN_CONFIG = {"task": "3way", "iterations": 4, "seed": 0, "start_bundle": None, "width": 0.125, "batch_size": 4,
                "max_slices": 3, "input_size": 64}


def tiny_bundle(path):
    """A random 64-pixel bundle biased to COVID, so the saliency step finds boxes for the annotators."""
    torch.manual_seed(0)
    model = MultiScaleVGG(num_classes=3, width=0.125)
    with torch.no_grad():
        for head in model.heads:
            head.bias[2] = 3.0
    return save_bundle(model, path, {"name": "tiny", "version": "1", "classes": ["NP", "CAP", "COVID"],
                                     "input_size": [64, 64], "saliency": {"steps": 2, "min_box_area_px": 4}})


def wait(job_id: int, timeout: float = 240.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.done:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout} s: {job.message}")


def download(client, export_id: int) -> zipfile.ZipFile:
    response = client.get(f"/api/exports/{export_id}/download/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def review(people, studies: dict[str, list[Study]]) -> None:
    """Clinicians confirm the AI's COVID calls and correct the others; annotators work on the AI's boxes."""
    clinician, annotator = client_for(people.clinician), client_for(people.annotator)
    for truth, group in studies.items():
        for study in group:
            put = clinician.put(f"/api/studies/{study.pk}/decision/", {"label": truth.lower(), "comment": "",
                                                                        "version": 0}, format="json")
            assert put.status_code == 201, put.content
            assert clinician.post(f"/api/studies/{study.pk}/mark-reviewed/", {}, format="json").status_code == 200
    boxes = [b for b in Box.objects.filter(provenance=Box.Provenance.AI).order_by("pk")]
    assert len(boxes) >= 3, "the biased tiny model should have proposed boxes on the saliency studies"
    accepted, edited, rejected = boxes[0], boxes[1], boxes[2]
    assert annotator.post(f"/api/boxes/{accepted.pk}/accept/", {"version": accepted.version},
                          format="json").status_code == 200
    patch = annotator.patch(f"/api/boxes/{edited.pk}/", {"x0": edited.x0 + 1, "x1": edited.x1 + 2,
                                                         "version": edited.version}, format="json")
    assert patch.status_code == 200, patch.content
    assert annotator.post(f"/api/boxes/{rejected.pk}/reject/", {"version": rejected.version},
                          format="json").status_code == 200
    for study in (studies["CAP"][0], studies["COVID"][2]):
        sop = study.series.get().instances.order_by("instance_number")[2].sop_instance_uid
        created = annotator.post(f"/api/studies/{study.pk}/boxes/", {"sop_instance_uid": sop, "x0": 10, "y0": 12,
                                                                     "x1": 20, "y1": 25, "label": "cap_lesion"},
                                 format="json")
        assert created.status_code == 201, created.content


def test_review_to_retrained_model_loop(start_worker, settings, tmp_path):
    settings.LUNGSCOPE_MODEL = str(tiny_bundle(tmp_path / "tiny"))
    people = make_people()
    admin = client_for(people.admin)
    tiny = services.ensure_default_model_version()
    assert tiny.is_active and services.ensure_default_model_version() == tiny  # idempotent
    start_worker(OMP_NUM_THREADS="1", LUNGSCOPE_MODEL=settings.LUNGSCOPE_MODEL)  # the same shipped bundle

    # Ingest through the upload API.
    identities, studies = [], {"NP": [], "CAP": [], "COVID": []}
    for n, label in enumerate(("NP", "CAP", "COVID") * 3):
        files, identity = phantom_files(tmp_path, label, seed=900 + n)  # fixed seeds: the same boxes every run
        identities.append(identity)
        handles = [open(p, "rb") for p in files]
        response = client_for(people.clinician).post("/api/uploads/", {"files": handles}, format="multipart")
        for fh in handles:
            fh.close()
        assert response.status_code == 201, response.content
        studies[label].append(Study.objects.get(study_instance_uid=response.json()["results"][0]["study_instance_uid"]))

    # AI analysis on the gpu queue; saliency only where the annotators will work.
    jobs = []
    for n, study in enumerate(s for group in studies.values() for s in group):
        settings.LUNGSCOPE_SALIENCY = "positive" if n in (2, 8) else "none"
        response = client_for(people.clinician).post(f"/api/studies/{study.pk}/analyze/")
        assert response.status_code == 202, response.content
        jobs.append(response.json()["job"]["id"])
    assert all(wait(j).status == Job.Status.SUCCEEDED for j in jobs), [Job.objects.get(pk=j).error for j in jobs]
    assert set(AnalysisRun.objects.values_list("model_version", flat=True)) == {tiny.pk}

    review(people, studies)

    # A frozen dataset version of the reviewed studies.
    created = admin.post("/api/dataset-versions/", {"name": "loop"}, format="json")
    assert created.status_code == 201, created.content
    version = created.json()
    assert version["summary"]["studies"] == 9 and version["summary"]["per_class"] == {"cap": 3, "covid": 3, "np": 3}
    assert version["summary"]["boxes_per_provenance"] == {"ai_accepted": 1, "ai_edited": 1, "human": 2}
    assert version["summary"]["boxes_excluded"]["rejected"] == 1 and version["summary"]["ai_agreement"] == 3

    # Every export format through the worker, downloaded and scanned for identity.
    exports = {}
    for fmt in ("training_ready", "coco", "sr", "csv"):
        response = admin.post("/api/exports/", {"dataset_version": version["id"], "format": fmt}, format="json")
        assert response.status_code == 202 and response.json()["deidentify"] is True
        exports[fmt] = response.json()
    for export in exports.values():
        job = wait(export["job"]["id"])
        assert job.status == Job.Status.SUCCEEDED, job.error
        detail = admin.get(f"/api/exports/{export['id']}/").json()
        assert detail["job"]["progress"] == 100 and detail["download_url"]
        archive = download(admin, export["id"])
        assert_no_identity(archive, identities)
        assert "manifest.json" in archive.namelist()
    assert len([n for n in download(admin, exports["sr"]["id"]).namelist() if n.endswith("sr.dcm")]) == 9

    # A tiny training run on the gpu queue, watched through the progress endpoint.
    response = admin.post("/api/training-runs/", {"dataset_version": version["id"], "config": TRAIN_CONFIG},
                          format="json")
    assert response.status_code == 202, response.content
    run = response.json()
    job = wait(run["job"]["id"])
    assert job.status == Job.Status.SUCCEEDED, job.error
    progress = admin.get(f"/api/training-runs/{run['id']}/progress/").json()
    assert progress["status"] == "succeeded" and [p["iter"] for p in progress["points"]] == [1, 2, 3, 4]
    assert all(p["loss"] is not None for p in progress["points"])
    assert admin.get(f"/api/training-runs/{run['id']}/progress/?after=3").json()["points"][0]["iter"] == 4
    new_id = admin.get(f"/api/training-runs/{run['id']}/").json()["model_version"]
    listed = {v["id"]: v for v in admin.get("/api/model-versions/").json()["results"]}
    new = listed[new_id]
    assert new["source"] == "trained" and new["dataset_version"] == version["id"] and not new["is_active"]
    assert new["compared_with"] == tiny.pk and new["held_out"]["study"]["accuracy"] is not None
    assert set(new["active_on_held_out"]["study"]) == set(new["held_out"]["study"])  # same figures, side by side
    assert new["metrics"]["comparison"]["held_out_studies"] and new["config"]["iterations"] == 4
    assert admin.get(new["roc_url"])["Content-Type"] == "image/png"
    stored = ModelVersion.objects.get(pk=new_id)
    assert stored.bundle_path == f"storage:models/{stored.sha256}"  # published: any host can load it

    # Promote (audited), then a re-analysis runs the new version.
    assert client_for(people.clinician).post(f"/api/model-versions/{new_id}/promote/").status_code == 403
    assert admin.post(f"/api/model-versions/{new_id}/promote/").json()["is_active"] is True
    event = AuditEvent.objects.get(action="model.promote")
    assert event.before["active"]["id"] == tiny.pk and event.after["active"]["id"] == new_id
    study = studies["COVID"][0]
    settings.LUNGSCOPE_SALIENCY = "none"
    response = admin.post("/api/reanalysis/", {"study_ids": [study.pk]}, format="json")
    assert response.status_code == 202 and response.json()["model_version"] == new_id
    assert wait(response.json()["jobs"][0]["job"]).status == Job.Status.SUCCEEDED
    assert AnalysisRun.objects.filter(study=study).first().model_version_id == new_id
    assert admin.post("/api/model-versions/rollback/").json()["id"] == tiny.pk

    # A second, long run is cancelled once it is training; the state is recorded and nothing is registered.
    response = admin.post("/api/training-runs/", {"dataset_version": version["id"],
                                                  "config": {**TRAIN_CONFIG, "iterations": 5000}}, format="json")
    long_run = response.json()
    deadline = time.monotonic() + 120
    while TrainingRun.objects.get(pk=long_run["id"]).iteration < 1:
        assert time.monotonic() < deadline, "the long run never started training"
        time.sleep(0.3)
    assert admin.post(f"/api/training-runs/{long_run['id']}/cancel/").status_code == 202
    assert wait(long_run["job"]["id"], timeout=60).status == Job.Status.CANCELLED
    cancelled = TrainingRun.objects.get(pk=long_run["id"])
    assert cancelled.status == TrainingRun.Status.CANCELLED and cancelled.model_version is None
    assert cancelled.iteration < 5000 and ModelVersion.objects.count() == 2
    assert admin.post(f"/api/training-runs/{long_run['id']}/cancel/").status_code == 409
