"""The analyze job: queue it (``enqueue_analysis``) and run it on the ``gpu`` queue (``analyze_study``).

Delivery is at-least-once (``acks_late``: a worker killed mid-run leaves the message for another), so the task is
idempotent: a succeeded run is skipped, and storing replaces whatever an earlier attempt of the same run wrote.
Failures split in three: inputs no retry can fix (no CT series, unreadable pixels, a missing model) fail at once;
transient ones (storage or database away, GPU memory) are retried with exponential back-off, at most
``max_retries`` times; anything else is a bug, recorded with its traceback and not retried.
"""
from __future__ import annotations

import logging
import time
import traceback

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from webapp.jobs.models import Job
from webapp.registry.models import ModelVersion
from webapp.studies.models import Study

from . import services, stable
from .models import AnalysisRun

logger = logging.getLogger(__name__)

#: Seconds before the first retry; each further retry waits twice as long (2, 4, 8 s).
RETRY_BACKOFF_S = 2.0
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, OperationalError, InterfaceError)


def transient_errors() -> tuple[type[BaseException], ...]:
    """TRANSIENT_ERRORS and GPU out-of-memory. torch is imported here, in the worker running the task (the analysis
    has loaded it by then), not when the web process imports this module for ``enqueue_analysis``."""
    import torch

    return (*TRANSIENT_ERRORS, torch.cuda.OutOfMemoryError)


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


@shared_task(bind=True, acks_late=True, max_retries=3)
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
    try:
        services.execute(run, report=run.job.report if run.job else lambda progress, message="": None)
    except services.AnalysisError as exc:
        services.mark_failed(run, str(exc))
    except transient_errors() as exc:
        attempt = self.request.retries + 1
        if self.request.retries >= self.max_retries:
            services.mark_failed(run, f"{exc} (gave up after {attempt} attempts)", traceback.format_exc())
        else:
            delay = RETRY_BACKOFF_S * 2 ** self.request.retries
            logger.warning("analysis run %s attempt %s failed (%s); retrying in %.0f s", run_id, attempt, exc, delay)
            if run.job:
                run.job.report(run.job.progress, f"attempt {attempt} failed ({exc}); retrying in {delay:.0f} s")
            raise self.retry(exc=exc, countdown=delay) from exc
    except Exception as exc:  # a bug: record it so the study does not stay 'analysing' forever
        logger.exception("analysis run %s failed", run_id)
        services.mark_failed(run, f"internal error: {type(exc).__name__}: {exc}", traceback.format_exc())
    run.refresh_from_db(fields=["status"])
    return run.status
