"""Model registry and training runs without a worker: promote/rollback with audit, permissions, config checks,
cancelling a queued run, the progress log, the shipped-bundle registration, and a run that fails with a reason."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from inference.bundle import WEIGHTS_FILE, file_sha256, save_bundle
from inference.classifier import MultiScaleVGG
from factories import client_for
from curation_factories import decide, ingest_phantom
from webapp.analysis.services import bundle_at
from webapp.curation.services import Criteria, create_dataset_version
from webapp.jobs.models import Job
from webapp.registry import services
from webapp.registry.models import ModelActivation, ModelVersion, TrainingRun
from webapp.retraining.tasks import train_model
from webapp.retraining.training import create_training_run, json_safe, retrain_config, work_dir
from webapp.review.models import AuditEvent

CONFIG = {"task": "3way", "iterations": 3, "seed": 0, "start_bundle": None}


def bundle(path, classes=("NP", "CAP", "COVID"), version="1"):
    torch.manual_seed(len(str(path)))
    return save_bundle(MultiScaleVGG(num_classes=len(classes), width=0.0625), path,
                       {"name": "t", "version": version, "classes": list(classes), "input_size": [64, 64]})


def version(tmp_path, name: str, classes=("NP", "CAP", "COVID")) -> ModelVersion:
    return services.register_bundle(bundle(tmp_path / name, classes, version=name), source="trained")


@pytest.fixture
def dataset(people, tmp_path, storage_dir):
    study, _ = ingest_phantom(tmp_path, "COVID")
    decide(study, "indeterminate", people.clinician)
    return create_dataset_version(Criteria(), name="d")


def test_shipped_bundle_becomes_the_first_active_version_once(db, tmp_path, settings):
    settings.LUNGSCOPE_MODEL = str(tmp_path / "absent")
    assert services.ensure_default_model_version() is None
    settings.LUNGSCOPE_MODEL = str(bundle(tmp_path / "shipped"))
    first = services.ensure_default_model_version()
    assert first.is_active and first.source == "shipped"
    assert first.sha256 == file_sha256(tmp_path / "shipped" / WEIGHTS_FILE)  # what analyses record
    assert services.ensure_default_model_version() == first and ModelVersion.objects.count() == 1
    assert ModelActivation.objects.get().action == "initial"


def test_promote_and_rollback_walk_the_activation_history_with_audit(people, tmp_path):
    a, b, c = (version(tmp_path, n) for n in "abc")
    a.activate()  # activated directly (e.g. by a data fix): rollback still finds it
    admin = client_for(people.admin)
    for v in (b, c):
        assert admin.post(f"/api/model-versions/{v.pk}/promote/").status_code == 200
    assert admin.post(f"/api/model-versions/{c.pk}/promote/").status_code == 200  # again: no new activation
    assert ModelVersion.objects.get(is_active=True) == c
    assert admin.post("/api/model-versions/rollback/").json()["id"] == b.pk
    assert admin.post("/api/model-versions/rollback/").json()["id"] == a.pk
    nothing = admin.post("/api/model-versions/rollback/")
    assert nothing.status_code == 409 and "no earlier active version" in nothing.json()["detail"]
    events = list(AuditEvent.objects.filter(object_type="modelversion").order_by("pk"))
    assert [(e.action, e.before["active"]["id"], e.after["active"]["id"]) for e in events] == [
        ("model.promote", a.pk, b.pk), ("model.promote", b.pk, c.pk),
        ("model.rollback", c.pk, b.pk), ("model.rollback", b.pk, a.pk)]
    assert all(e.actor == people.admin for e in events)
    listed = client_for(people.clinician).get("/api/model-versions/").json()  # anyone may read the registry
    assert [v["is_active"] for v in listed["results"]].count(True) == 1


def test_only_admins_train_cancel_promote_rollback_and_reanalyse(people, dataset, tmp_path):
    v = version(tmp_path, "a")
    run = create_training_run(dataset, CONFIG)
    for user in (people.clinician, people.annotator):
        client = client_for(user)
        assert client.get("/api/training-runs/").status_code == 403
        assert client.post("/api/training-runs/", {"dataset_version": dataset.pk, "config": CONFIG},
                           format="json").status_code == 403
        assert client.post(f"/api/training-runs/{run.pk}/cancel/").status_code == 403
        assert client.get(f"/api/training-runs/{run.pk}/progress/").status_code == 403
        assert client.post(f"/api/model-versions/{v.pk}/promote/").status_code == 403
        assert client.post("/api/model-versions/rollback/").status_code == 403
        assert client.post("/api/reanalysis/", {"study_ids": [1]}, format="json").status_code == 403
        client.force_login(user)
        assert client.get("/registry/").status_code == 403
    assert TrainingRun.objects.get(pk=run.pk).status == "queued" and not ModelVersion.objects.filter(is_active=True)
    page = client_for(people.admin)
    page.force_login(people.admin)
    assert page.get("/registry/").status_code == 200 and page.get("/curation/").status_code == 200


def test_training_config_and_reanalysis_input_are_checked(people, dataset, tmp_path):
    admin = client_for(people.admin)
    two_class = version(tmp_path, "b", classes=("NP", "COVID"))

    def post(config, dataset_version=dataset.pk):
        return admin.post("/api/training-runs/", {"dataset_version": dataset_version, "config": config},
                          format="json")

    assert "task" in post({**CONFIG, "task": "5way"}).json()["config"]
    assert "iterations" in post({**CONFIG, "iterations": 0}).json()["config"]
    mismatch = post({**CONFIG, "start_bundle": two_class.pk})
    assert mismatch.status_code == 400 and "predicts" in str(mismatch.json())
    assert post(CONFIG, dataset_version=9999).status_code == 400
    ok = post({**CONFIG, "task": "np-covid", "start_bundle": two_class.pk})
    assert ok.status_code == 202 and ok.json()["config"]["start_bundle"] == two_class.pk
    assert ok.json()["job"]["status"] == "queued" and ok.json()["total_iterations"] == 3
    for reach in (0, -5, 201, "far"):
        bad = post({**CONFIG, "outside_lungs_mm": reach})
        assert bad.status_code == 400 and "outside_lungs_mm" in bad.json()["config"], reach
    blanked = post({**CONFIG, "outside_lungs_mm": 10})
    assert blanked.status_code == 202 and blanked.json()["config"]["outside_lungs_mm"] == 10
    run = TrainingRun.objects.get(pk=blanked.json()["id"])
    assert retrain_config(run, tmp_path / "blanked-1").prep.outside_lungs_mm == 10  # what retrain then trains with
    assert retrain_config(TrainingRun.objects.get(pk=ok.json()["id"]), tmp_path / "whole-1").prep.outside_lungs_mm is None
    missing = admin.post("/api/reanalysis/", {"study_ids": [987654]}, format="json")
    assert missing.status_code == 400 and "no such studies" in str(missing.json())
    assert admin.post("/api/reanalysis/", {"study_ids": []}, format="json").status_code == 400


def test_cancelling_a_queued_run_ends_it_and_the_worker_then_leaves_it(people, dataset):
    run = create_training_run(dataset, CONFIG, people.admin)
    response = client_for(people.admin).post(f"/api/training-runs/{run.pk}/cancel/")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    assert response.json()["job"]["status"] == "cancelled"
    assert train_model(run.pk) == "cancelled"  # the message arriving later changes nothing
    assert client_for(people.admin).post(f"/api/training-runs/{run.pk}/cancel/").status_code == 409


def test_progress_reads_the_metrics_log_incrementally(people, dataset, settings):
    run = create_training_run(dataset, {**CONFIG, "iterations": 10})
    log = work_dir(run) / "train" / "metrics.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps({"iter": i, "loss": 1.0 / i, "eta_s": 10 - i}) + "\n" for i in (1, 2, 3))
                   + '{"iter": 4, "lo')  # a line still being written
    TrainingRun.objects.filter(pk=run.pk).update(
        metrics_log=str(log.relative_to(settings.MEDIA_ROOT)), status="running", iteration=3,
        last_metrics={"iter": 3, "eta_s": 7})
    admin = client_for(people.admin)
    body = admin.get(f"/api/training-runs/{run.pk}/progress/").json()
    assert [p["iter"] for p in body["points"]] == [1, 2, 3] and body["eta_s"] == 7
    assert [p["iter"] for p in admin.get(f"/api/training-runs/{run.pk}/progress/?after=2").json()["points"]] == [3]
    assert admin.get(f"/api/training-runs/{run.pk}/progress/?after=x").status_code == 400


def test_a_run_that_cannot_train_fails_with_the_reason(people, dataset):
    run = create_training_run(dataset, CONFIG, people.admin)
    assert train_model(run.pk) == "failed"
    run.refresh_from_db()
    assert "not a training class" in run.error and run.job.status == Job.Status.FAILED
    assert "no study could be exported" in run.job.message


def test_non_finite_numbers_become_null_for_postgres_json():
    assert json_safe({"loss": float("nan"), "best": [float("inf"), 1.5], "stage": "joint"}) == {
        "loss": None, "best": [None, 1.5], "stage": "joint"}


@pytest.mark.django_db
def test_one_model_is_loaded_once_whichever_way_and_path_it_is_asked_for(tmp_path, settings):
    settings.LUNGSCOPE_MODEL = str(bundle(tmp_path / "shipped"))
    copy = tmp_path / "copy"
    shutil.copytree(tmp_path / "shipped", copy)
    active = services.active_bundle()  # no version registered: the shipped bundle
    sha256 = file_sha256(copy / WEIGHTS_FILE)
    assert bundle_at(str(copy), sha256) is active and bundle_at(settings.LUNGSCOPE_MODEL) is active
    meta = json.loads((copy / "model.json").read_text())
    (copy / "model.json").write_text(json.dumps({**meta, "version": "2"}))  # rewritten in place: another bundle
    assert bundle_at(str(copy), sha256) is not active and bundle_at(str(copy), sha256).version == "2"
