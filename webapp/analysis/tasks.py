"""The analyze job: queue it (``enqueue_analysis``) and run it on the ``gpu`` queue (``analyze_study``).

Delivery is at-least-once (``acks_late``: a worker killed mid-run leaves the message for another), so the task is
idempotent: a succeeded run is skipped, and storing replaces whatever an earlier attempt of the same run wrote.
Failures follow the one policy of ``webapp.core.jobtask.JobTask``: inputs no retry can fix (``AnalysisError``: no CT
series, unreadable pixels, a missing model) fail at once; transient ones (storage or database away, GPU memory) are
retried with exponential back-off (2, 4, 8 s); anything else is a bug, recorded with its traceback and not retried.
"""
from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.db import transaction

from webapp.core.jobtask import JobTask
from webapp.jobs.models import Job
from webapp.registry.models import ModelVersion
from webapp.studies.models import Study

from . import services, stable
from .models import AnalysisRun

logger = logging.getLogger(__name__)

def enqueue_analysis(study: Study, user=None, model_version: ModelVersion | None = None,
                     stable_after_s: float | None = None) -> Job:
    """Create the Job and a queued AnalysisRun, and send the task once they are committed.

    Without ``model_version`` the worker runs whichever model is active when it starts. Every call adds a run:
    re-analysis never overwrites earlier results. ``stable_after_s`` (automatic runs, see ``stable``) holds the
    run until no instance of the study has arrived for that many seconds.
    """
    with transaction.atomic():
        job = Job.objects.create(kind=Job.Kind.ANALYZE, created_by=user if user and user.is_authenticated else None,
                                 message="queued")
        active = model_version or ModelVersion.objects.filter(is_active=True).first()
        run = AnalysisRun.objects.create(
            study=study, job=job, model_version=model_version,
            model_name=active.name if active else str(settings.LUNGSCOPE_MODEL),
            model_version_label=active.version if active else "", saliency_mode=settings.LUNGSCOPE_SALIENCY,
        )
        job.params = {"study_id": study.pk, "analysis_run_id": run.pk,
                      "model_version_id": model_version.pk if model_version else None}
        if stable_after_s is not None:
            job.params[stable.STABLE_AFTER] = stable_after_s
        job.save(update_fields=["params"])
        services.settle_study_status(study.pk)
        transaction.on_commit(lambda: analyze_study.apply_async((run.pk,), countdown=stable_after_s or None))
    return job


def study_received(study_id: int) -> Job | None:
    """Queue the study's automatic analysis unless one is already waiting to start (``stable``: one run per
    study once it is stable, for every way in); returns the new job, if any."""
    with transaction.atomic():
        study = Study.objects.select_for_update().filter(pk=study_id).first()
        if study is None:  # deleted since its instances were stored
            return None
        waiting = AnalysisRun.objects.filter(study_id=study_id, status=AnalysisRun.Status.QUEUED,
                                             job__params__has_key=stable.STABLE_AFTER)
        if waiting.exists():
            return None
        return enqueue_analysis(study, stable_after_s=settings.LUNGSCOPE_STABLE_STUDY_S)


@shared_task(bind=True, base=JobTask, job_owner="analysis.AnalysisRun", permanent_errors=(services.AnalysisError,))
def analyze_study(self, run_id: int) -> str:
    """Analyse the study of AnalysisRun ``run_id``; returns the run's final status."""
    run = AnalysisRun.objects.select_related("study", "job", "model_version").filter(pk=run_id).first()
    if run is None:  # the study was deleted while the task waited
        logger.warning("analysis run %s no longer exists; nothing to do", run_id)
        return "missing"
    if run.status in {AnalysisRun.Status.SUCCEEDED, AnalysisRun.Status.FAILED}:
        return run.status  # a redelivery of a finished run
    while (wait := stable.start_when_stable(run)) > 0:  # instances still arriving: come back when it may be stable
        if not self.request.is_eager:
            analyze_study.apply_async((run_id,), countdown=wait)
            return "waiting"
        time.sleep(wait)  # an eager call (make_demo --sync, tests) has no broker to come back through
    # start_when_stable has started the job; a final failure is recorded on the run, its job and its study.
    with self.running(run.job, fail=lambda reason, details: services.mark_failed(run, reason, details), start=False):
        services.execute(run, report=run.job.report if run.job else lambda progress, message="": None)
    run.refresh_from_db(fields=["status"])
    return run.status
