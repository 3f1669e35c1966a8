"""The analysis app end to end: ingest a phantom, run the analyze task (in a real Celery worker or in-process),
check what it stores, and the REST endpoints that serve runs and maps.

Models are tiny random bundles (64-pixel input, 4 IG steps) that are biased to call every slice COVID, so every lung
slice gets saliency and boxes: the tests check plumbing and invariants, not accuracy.
"""
from __future__ import annotations

import io
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import factories
from django.core.files.storage import default_storage
from factories import make_finding_bundle, wait_for_job
from PIL import Image
from rest_framework.test import APIClient

from inference.bundle import WEIGHTS_FILE, file_sha256
from webapp.analysis.models import AnalysisRun, Finding, SliceResult
from webapp.analysis.tasks import analyze_study, enqueue_analysis
from webapp.jobs.models import Job
from webapp.registry.models import ModelVersion
from webapp.review.models import Box
from webapp.studies.models import Instance, Study

SLICES, SIZE = 12, 96


def ingest_phantom(tmp_path: Path, label: str = "COVID", seed: int = 7) -> Study:
    return factories.ingest_phantom(tmp_path, label, seed, n_slices=SLICES, size=SIZE)


def stored_counts(run: AnalysisRun) -> tuple[int, int, int, list[str]]:
    _, files = default_storage.listdir(f"maps/{run.pk}")
    return run.slices.count(), run.findings.count(), Box.objects.filter(analysis_run=run).count(), sorted(files)


# --------------------------------------------------------------------------- the task in a real worker

@pytest.mark.worker
def test_worker_analyses_a_study_and_a_redelivery_duplicates_nothing(start_worker, tiny_bundle, tmp_path):
    study = ingest_phantom(tmp_path)
    worker = start_worker(queues="gpu", LUNGSCOPE_MODEL=str(tiny_bundle), OMP_NUM_THREADS="1")
    job = wait_for_job(enqueue_analysis(study))
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert job.progress == 100

    run = AnalysisRun.objects.get(job=job)
    study.refresh_from_db()
    assert (run.status, study.status) == (AnalysisRun.Status.SUCCEEDED, Study.Status.AI_DONE)
    assert (study.ai_label, study.ai_probability, study.ai_uncertainty, study.infection_percent,
            study.opacity_percent, study.ai_outside) == (
        run.label, run.probability, run.uncertainty, run.infection_percent, run.opacity_percent,
        bool(run.domain_outside))  # the worklist's columns
    assert run.opacity_percent == run.result["opacity"]["percent"]
    assert run.model_sha256 == file_sha256(tiny_bundle / WEIGHTS_FILE)
    assert set(run.probabilities) == {"NP", "CAP", "COVID"} and run.label in run.probabilities
    assert run.uncertainty == pytest.approx(1 - max(run.probabilities.values()))
    assert run.result["schema"] == "lungscope.analysis/2" and run.label == "COVID"

    instances = {i.sop_instance_uid: i for i in Instance.objects.filter(series__study=study)}
    slices = list(run.slices.all())
    assert [s.index for s in slices] == [s["index"] for s in run.result["slices"]]  # the lung slices
    assert 0 < len(slices) <= SLICES and all(s.sop_instance_uid in instances for s in slices)
    assert [s.z_mm for s in slices] == sorted(s.z_mm for s in slices)
    assert all(s.z_mm == pytest.approx(instances[s.sop_instance_uid].image_position_patient[2]) for s in slices)
    for s in slices:
        assert s.maps.name == f"maps/{run.pk}/{s.index}.npz" and default_storage.exists(s.maps.name)

    findings = list(run.findings.select_related("slice"))
    assert findings, "saliency on every lung slice should give at least one box"
    for finding in findings:
        instance = instances[finding.sop_instance_uid]
        assert len(finding.patient_coords) == 4
        x0, y0, z0 = instance.image_position_patient
        dy, dx = instance.pixel_spacing
        assert finding.patient_coords[0] == pytest.approx([x0 + finding.x0 * dx, y0 + finding.y0 * dy, z0], abs=1e-3)
        assert finding.patient_coords[2] == pytest.approx([x0 + finding.x1 * dx, y0 + finding.y1 * dy, z0], abs=1e-3)
        box = finding.box
        assert (box.provenance, box.status, box.analysis_run_id) == (Box.Provenance.AI, Box.Status.PROPOSED, run.pk)
        assert (finding.label, box.label) == ("COVID", "covid_lesion")
        assert (box.x0, box.y0, box.x1, box.y1, box.patient_coords) == (
            finding.x0, finding.y0, finding.x1, finding.y1, finding.patient_coords)

    # A redelivery of the finished message is a no-op; one of a run that had not been marked done (a worker killed
    # between storing and acknowledging) recomputes and replaces, never adds.
    before = stored_counts(run)
    AnalysisRun.objects.filter(pk=run.pk).update(status=AnalysisRun.Status.RUNNING)
    analyze_study.delay(run.pk)
    analyze_study.delay(run.pk)
    deadline = time.monotonic() + 120
    while worker.log.read_text(errors="replace").count("] succeeded in") < 3:  # the first message and both redeliveries
        assert time.monotonic() < deadline, "the redelivered messages were not both handled"
        time.sleep(0.5)
    assert AnalysisRun.objects.get(pk=run.pk).status == AnalysisRun.Status.SUCCEEDED
    assert stored_counts(run) == before
    assert AnalysisRun.objects.filter(study=study).count() == 1


@pytest.mark.worker
def test_study_with_files_missing_from_storage_fails_after_bounded_retries(start_worker, tiny_bundle, tmp_path):
    study = ingest_phantom(tmp_path, label="CAP", seed=8)
    for name in Instance.objects.filter(series__study=study).values_list("file", flat=True)[:3]:
        default_storage.delete(name)
    start_worker(queues="gpu", LUNGSCOPE_MODEL=str(tiny_bundle), OMP_NUM_THREADS="1")
    job = wait_for_job(enqueue_analysis(study), timeout=90)
    run = AnalysisRun.objects.get(job=job)
    study.refresh_from_db()
    assert job.status == Job.Status.FAILED and job.attempts == 4  # the first try and max_retries=3 retries
    assert "missing from storage" in job.error and "gave up after 4 attempts" in job.error
    assert run.status == AnalysisRun.Status.FAILED and "missing from storage" in run.error
    assert study.status == Study.Status.FAILED
    assert not run.slices.exists()


@pytest.mark.django_db
def test_a_final_failure_is_written_to_run_job_and_study_together(monkeypatch):
    """A client that sees the job failed must see the study settled: the three writes are one transaction, so a
    fault while settling the study leaves neither the run nor the job marked failed (the worker's retry then
    records the failure whole)."""
    from webapp.analysis import services
    from webapp.studies.models import Patient

    study = Study.objects.create(study_instance_uid="2.25.5150", patient=Patient.objects.create(patient_id="P5150"),
                                 status=Study.Status.ANALYSING)
    job = Job.objects.create(kind=Job.Kind.ANALYZE, status=Job.Status.RUNNING)
    run = AnalysisRun.objects.create(study=study, job=job, model_name="default", status=AnalysisRun.Status.RUNNING)

    def settle_fails(study_id: int) -> None:
        raise RuntimeError("the database went away while settling the study")

    monkeypatch.setattr(services, "settle_study_status", settle_fails)
    with pytest.raises(RuntimeError):
        services.mark_failed(run, "missing from storage")
    run.refresh_from_db()
    job.refresh_from_db()
    assert (run.status, job.status) == (AnalysisRun.Status.RUNNING, Job.Status.RUNNING)

    monkeypatch.undo()
    services.mark_failed(run, "missing from storage")
    run.refresh_from_db()
    job.refresh_from_db()
    study.refresh_from_db()
    assert (run.status, job.status, study.status) == (AnalysisRun.Status.FAILED, Job.Status.FAILED,
                                                      Study.Status.FAILED)


# --------------------------------------------------------------------------- failures that no retry can fix

@pytest.mark.django_db
def test_unreadable_series_fails_at_once_with_a_reason(storage_dir, tiny_bundle, tmp_path):
    study = ingest_phantom(tmp_path)
    for name in Instance.objects.filter(series__study=study).values_list("file", flat=True):
        with default_storage.open(name, "wb") as fh:
            fh.write(b"not a DICOM file")
    job = enqueue_analysis(study)
    analyze_study.apply(args=[job.params["analysis_run_id"]])
    job.refresh_from_db()
    run = AnalysisRun.objects.get(job=job)
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)
    assert "cannot be read" in run.error and "no DICOM images" in run.error


@pytest.mark.django_db
def test_study_without_ct_fails_at_once(storage_dir, tiny_bundle, tmp_path):
    study = ingest_phantom(tmp_path)
    study.series.update(modality="MR")
    job = enqueue_analysis(study)
    analyze_study.apply(args=[job.params["analysis_run_id"]])
    job.refresh_from_db()
    assert (job.status, job.attempts) == (Job.Status.FAILED, 1)
    assert "no CT series" in job.error


# --------------------------------------------------------------------------- REST

def post_analyze(client: APIClient, study: Study, **body) -> AnalysisRun:
    response = client.post(f"/api/studies/{study.pk}/analyze/", body, format="json")
    assert response.status_code == 202, response.content
    run = AnalysisRun.objects.get(pk=response.json()["analysis_run"])
    assert response.json()["job"]["id"] == run.job_id and run.status == AnalysisRun.Status.QUEUED
    return run


def run_in_process(run: AnalysisRun) -> AnalysisRun:
    """The queued task, run here: a worker could not see rows inside the test's transaction."""
    analyze_study.apply(args=[run.pk])
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    return run


@pytest.mark.django_db
def test_analysis_endpoints_and_reanalysis_with_another_model(storage_dir, tiny_bundle, tmp_path, settings,
                                                              clinician, annotator):
    settings.LUNGSCOPE_SALIENCY = "none"  # no stored maps: the PNG endpoint must compute them on demand
    study = ingest_phantom(tmp_path)

    response = clinician.get(f"/api/studies/{study.pk}/analysis/")
    assert response.status_code == 404 and "no finished analysis" in response.json()["detail"]
    assert annotator.post(f"/api/studies/{study.pk}/analyze/").status_code == 403
    assert clinician.post("/api/studies/999999/analyze/").status_code == 404
    assert clinician.get("/api/studies/999999/analyses/").status_code == 404
    response = clinician.post(f"/api/studies/{study.pk}/analyze/", {"model_version": 999999}, format="json")
    assert response.status_code == 400 and "model_version" in response.json()

    first = post_analyze(clinician, study)
    detail = clinician.get(f"/api/studies/{study.pk}/analysis/").json()["detail"]
    assert f"analysis run {first.pk} is queued" in detail
    run_in_process(first)
    latest = annotator.get(f"/api/studies/{study.pk}/analysis/").json()
    assert latest["id"] == first.pk and latest["status"] == "succeeded"
    assert latest["model_name"] == "tiny" and latest["model_version"] == "t1"
    assert latest["series_instance_uid"] == study.series.get().series_instance_uid
    assert len(latest["slices"]) == first.slices.count() > 0 and not any(s["has_maps"] for s in latest["slices"])
    assert set(latest["slices"][0]) >= {"index", "sop_instance_uid", "instance_number", "z_mm", "probabilities",
                                        "lung_area_px", "infected_area_px", "has_maps"}
    assert clinician.get(f"/api/analysis-runs/{first.pk}/").json()["slices"] == latest["slices"]
    first_boxes = set(Box.objects.filter(analysis_run=first).values_list("pk", flat=True))

    # Re-analysis with a registered version adds a run; the first run and its boxes stay.
    other = make_finding_bundle(tmp_path / "tiny2", version="t2", seed=1)
    version = ModelVersion.objects.create(name="tiny", version="t2", bundle_path=str(other),
                                          sha256=file_sha256(other / WEIGHTS_FILE), classes=["NP", "CAP", "COVID"])
    second = post_analyze(clinician, study, model_version=version.pk)
    assert clinician.get(f"/api/studies/{study.pk}/analysis/").json()["id"] == first.pk  # until the new one is done
    run_in_process(second)
    assert second.model_version_id == version.pk and second.model_sha256 == version.sha256
    runs = clinician.get(f"/api/studies/{study.pk}/analyses/").json()
    assert runs["count"] == 2
    assert [(r["id"], r["model_version"]) for r in runs["results"]] == [(second.pk, "t2"), (first.pk, "t1")]
    assert runs["results"][0]["model_version_id"] == version.pk
    assert clinician.get(f"/api/studies/{study.pk}/analysis/").json()["id"] == second.pk
    assert first_boxes <= set(Box.objects.filter(study=study).values_list("pk", flat=True))
    assert Finding.objects.filter(run=first).count() == len(first_boxes)


@pytest.mark.django_db
def test_map_png_is_computed_on_demand_at_the_slice_size(storage_dir, tiny_bundle, tmp_path, settings, annotator,
                                                         clinician):
    settings.LUNGSCOPE_SALIENCY = "none"
    study = ingest_phantom(tmp_path)
    run = run_in_process(post_analyze(clinician, study))
    index = run.slices.all()[1].index
    assert not SliceResult.objects.get(run=run, index=index).maps

    for kind in ("joint", "conv3", "cam5", "lung"):
        response = annotator.get(f"/api/analysis-runs/{run.pk}/slices/{index}/maps/{kind}.png")
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        assert (image.mode, image.size) == ("L", (SIZE, SIZE))  # (columns, rows)
        assert float(response["X-Map-Max"]) >= 0
    assert response["X-Map-Max"] == "1"  # the lung mask
    stored = SliceResult.objects.get(run=run, index=index)
    assert stored.maps.name == f"maps/{run.pk}/{index}.npz" and default_storage.exists(stored.maps.name)
    slices = annotator.get(f"/api/studies/{study.pk}/analysis/").json()["slices"]
    assert [s["index"] for s in slices if s["has_maps"]] == [index]

    # Maps of a run whose model has changed since cannot be made: 410, not maps from other weights.
    AnalysisRun.objects.filter(pk=run.pk).update(model_sha256="0" * 64)
    other_index = next(s["index"] for s in slices if not s["has_maps"])
    response = annotator.get(f"/api/analysis-runs/{run.pk}/slices/{other_index}/maps/joint.png")
    assert response.status_code == 410 and "no longer available" in response.json()["detail"]

    for url, reason in ((f"/api/analysis-runs/{run.pk}/slices/{index}/maps/bogus.png", "Unknown map kind"),
                        (f"/api/analysis-runs/{run.pk}/slices/{SLICES + 5}/maps/joint.png", "has no slice"),
                        (f"/api/analysis-runs/{run.pk + 1000}/slices/0/maps/joint.png", "")):
        response = annotator.get(url, HTTP_ACCEPT="image/png")
        assert response.status_code == 404 and reason in response.json()["detail"]


@pytest.mark.django_db
def test_maps_on_demand_come_from_a_bundle_published_to_the_storage(storage_dir, tiny_bundle, tmp_path, settings,
                                                                    clinician):
    """A registered version lives in the storage (``storage:models/<sha256>``: the registry publishes every bundle
    so web, workers and the DICOM listener share it): the maps of a slice without stored ones are computed from
    that copy by a web process that never had the bundle's folder, and equal what the analysis itself would store."""
    from inference.pipeline import analyze
    from webapp.analysis import maps, services
    from webapp.registry.bundle_store import cache_dir
    from webapp.registry.services import register_bundle

    settings.LUNGSCOPE_SALIENCY = "none"
    study = ingest_phantom(tmp_path)
    folder = make_finding_bundle(tmp_path / "published", version="p1", seed=2)
    version = register_bundle(folder, source="test")
    run = run_in_process(post_analyze(clinician, study, model_version=version.pk))
    assert run.bundle_path == version.bundle_path == f"storage:models/{version.sha256}"
    shutil.rmtree(folder)
    shutil.rmtree(cache_dir() / version.sha256, ignore_errors=True)  # this host has no copy: it must fetch one

    index = run.slices.all()[2].index
    response = clinician.get(f"/api/analysis-runs/{run.pk}/slices/{index}/maps/conv3.png")
    assert response.status_code == 200, response.content
    stored = SliceResult.objects.get(run=run, index=index).maps.name
    # What the analysis would have stored with saliency on every slice, from the version's own weights.
    everything = analyze(services.readable_volume(run), services.bundle_at(version.bundle_path, version.sha256),
                         saliency="all", lungs=maps.load_lung_mask(run.pk))
    expected = everything.maps[index].ig[0]
    assert np.allclose(maps.load_map(stored, "conv3"), expected, atol=1e-3 * np.abs(expected).max())
    assert float(response["X-Map-Max"]) == pytest.approx(float(expected.max()), rel=1e-2)


def test_schema_describes_the_analysis_endpoints():
    from django.urls import include, path
    from drf_spectacular.generators import SchemaGenerator

    generator = SchemaGenerator(patterns=[path("api/", include("webapp.analysis.urls"))])
    schema = generator.get_schema(request=None, public=True)
    paths = schema["paths"]
    for route in ("/api/studies/{id}/analyze/", "/api/studies/{id}/analysis/", "/api/studies/{id}/analyses/",
                  "/api/analysis-runs/{id}/"):
        assert route in paths
    png = paths["/api/analysis-runs/{id}/slices/{index}/maps/{kind}.png"]["get"]
    assert "image/png" in png["responses"]["200"]["content"]
    kind = next(p for p in png["parameters"] if p["name"] == "kind")
    assert set(kind["schema"]["enum"]) == {"joint", "conv3", "conv4", "conv5", "cam3", "cam4", "cam5", "lung",
                                           "opacity"}


def test_a_runs_maps_are_stored_per_slice_and_read_back_as_analysed(storage_dir, tiny_bundle):
    """Every explained slice's maps, packed and written on several threads at once, land under their own slice's
    name and read back as the analysis gave them (float16 after scaling by each map's largest magnitude)."""
    from inference.bundle import load_bundle
    from inference.io import Volume
    from inference.pipeline import analyze
    from training.phantom import generate_study
    from webapp.analysis import maps

    phantom = generate_study(11, "COVID", size=96, n_slices=12)
    volume = Volume(array=phantom.hu.astype(np.float32), kind="nifti", is_hu=True, spacing_mm=(5.0, 3.0, 3.0))
    result = analyze(volume, load_bundle(str(tiny_bundle), device="cpu"), saliency="all",
                     lungs=phantom.lung_mask.astype(bool))
    assert len(result.maps) >= 4
    names = maps.save_run_maps(4242, result.maps, result.lung_mask, result.opacity_mask)
    assert names == {index: maps.maps_name(4242, index) for index in result.maps}
    for index, slice_maps in result.maps.items():
        for kind, expected in (("joint", slice_maps.joint), ("conv4", slice_maps.ig[1]), ("cam5", slice_maps.cams[2])):
            np.testing.assert_allclose(maps.load_map(names[index], kind), expected,
                                       atol=1e-3 * max(1e-30, float(np.abs(expected).max())))
        np.testing.assert_array_equal(maps.load_labels(names[index], "lung"), result.lung_mask[index])
        np.testing.assert_array_equal(maps.load_labels(names[index], "opacity"), result.opacity_mask[index])
