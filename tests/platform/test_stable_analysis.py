"""One analysis per study once it is stable, however the instances arrive (``webapp.analysis.stable``).

The rule sits in ingest's hand-off to the analysis app, so STOW-RS, uploads, zips, ``import_dicom`` and a DIMSE
listener share it; these tests drive it through STOW-RS requests and plain batches on the real database and broker.
"""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from platform_helpers import as_new_study

from webapp.analysis import stable
from webapp.analysis.models import AnalysisRun
from webapp.studies.ingest import IngestBatch
from webapp.studies.models import Instance, Study

pytestmark = pytest.mark.django_db

DICOM_MULTIPART = 'multipart/related; type="application/dicom"'


@pytest.fixture
def analyze_on_ingest(settings):
    settings.LUNGSCOPE_ANALYZE_ON_INGEST = True
    settings.LUNGSCOPE_STABLE_STUDY_S = 30.0


def stow(api, files: list[bytes]):
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
                    for data in files) + f"--{boundary}--\r\n".encode()
    return api.post("/dicomweb/studies", body, content_type=f"{DICOM_MULTIPART}; boundary={boundary}",
                    HTTP_ACCEPT="application/dicom+json")


def age_instances(study: Study, seconds: float) -> None:
    """Pretend the study's instances arrived ``seconds`` earlier than they did."""
    for instance in Instance.objects.filter(series__study=study):
        Instance.objects.filter(pk=instance.pk).update(created_at=instance.created_at - timedelta(seconds=seconds))


def test_many_small_stow_requests_of_interleaved_studies_queue_one_run_per_study(
        analyze_on_ingest, api, storage_dir, phantom_files, django_capture_on_commit_callbacks):
    first, second = as_new_study(phantom_files), as_new_study(phantom_files)
    with django_capture_on_commit_callbacks(execute=True):
        for start in range(0, len(phantom_files), 2):  # 8 requests of 2 instances, the two studies alternating
            for files in (first, second):
                assert stow(api, files[start:start + 2]).status_code == 200
    assert Instance.objects.count() == 2 * len(phantom_files)
    for study in Study.objects.all():
        (run,) = AnalysisRun.objects.filter(study=study)
        assert run.status == AnalysisRun.Status.QUEUED
        assert run.job.params[stable.STABLE_AFTER] == 30.0
        assert study.status == Study.Status.ANALYSING


def test_a_run_starts_once_the_study_is_quiet_and_late_instances_queue_one_follow_up(
        analyze_on_ingest, storage_dir, phantom_files, django_capture_on_commit_callbacks):
    files = as_new_study(phantom_files)
    with django_capture_on_commit_callbacks(execute=True):
        for data in files[:5]:  # five deliveries of one instance each
            with IngestBatch() as batch:
                batch.add_file(data, "early.dcm")
    study = Study.objects.get()
    (run,) = study.analysis_runs.all()

    waited = stable.start_when_stable(run)
    assert 29 < waited <= 30, "the newest instance just arrived: the run waits out the quiet period"
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.QUEUED

    age_instances(study, 31)
    assert stable.start_when_stable(run) == 0
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.RUNNING

    with django_capture_on_commit_callbacks(execute=True):
        for data in files[5:]:  # three late deliveries while the run runs: one follow-up, not three
            with IngestBatch() as batch:
                batch.add_file(data, "late.dcm")
    runs = list(study.analysis_runs.order_by("pk"))
    assert [r.status for r in runs] == [AnalysisRun.Status.RUNNING, AnalysisRun.Status.QUEUED]
    assert stable.start_when_stable(runs[1]) > 29, "the follow-up waits for quiet too"


def test_a_run_asked_for_by_a_person_starts_at_once(storage_dir, phantom_files):
    from webapp.analysis.tasks import enqueue_analysis

    with IngestBatch() as batch:
        for data in as_new_study(phantom_files):
            batch.add_file(data, "a.dcm")
    job = enqueue_analysis(Study.objects.get())
    run = job.analysis_runs.get()
    assert stable.STABLE_AFTER not in job.params
    assert stable.start_when_stable(run) == 0


@pytest.mark.worker
def test_a_real_worker_runs_the_automatic_analysis_once_after_many_deliveries(start_worker, settings, storage_dir,
                                                                           phantom_files, tmp_path):
    """Five deliveries, a worker on the gpu queue: the one run waits out the quiet period (1 s here) and succeeds."""
    from factories import make_tiny_bundle, wait_for_job

    bundle = make_tiny_bundle(tmp_path / "tiny", input_size=[64, 64], saliency={"steps": 4, "min_box_area_px": 4})
    settings.LUNGSCOPE_ANALYZE_ON_INGEST = True
    settings.LUNGSCOPE_STABLE_STUDY_S = 1.0
    settings.LUNGSCOPE_MODEL = str(bundle)
    files = as_new_study(phantom_files)
    for start in range(0, len(files), 2):
        with IngestBatch() as batch:  # transactional_db: on_commit runs at once, as in production
            for data in files[start:start + 2]:
                batch.add_file(data, "part.dcm")
    study = Study.objects.get()
    (run,) = study.analysis_runs.all()
    start_worker(queues="gpu", LUNGSCOPE_MODEL=str(bundle), OMP_NUM_THREADS="1")
    job = wait_for_job(run.job, timeout=240)
    run.refresh_from_db()
    assert run.status == AnalysisRun.Status.SUCCEEDED, run.error
    assert study.analysis_runs.count() == 1
    assert run.job.started_at >= max(Instance.objects.filter(series__study=study).values_list("created_at", flat=True))
    assert job.status == "succeeded"
