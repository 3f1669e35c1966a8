"""The send job: build the result objects once and deliver them to each destination of the job.

Each destination is tried in turn; those that fail are retried together with exponential back-off
(``LUNGSCOPE_DICOM_SEND_BACKOFF_S`` * 2^n, at most ``max_retries`` times), and those already sent are never sent
twice. Objects that cannot be built (no analysed series, images gone) fail the job at once: no retry changes that.
"""
from __future__ import annotations

from celery import shared_task
from celery.exceptions import Retry
from django.conf import settings
from django.utils import timezone

from webapp.analysis.models import AnalysisRun
from webapp.core.jobtask import JobTask
from webapp.jobs.models import Job

from .models import Delivery
from .results import ResultsError, build_results
from .sender import SendError, send_dimse, send_stow


@shared_task(bind=True, base=JobTask, max_retries=4)
def send_results(self, job_id: int) -> str:
    job = Job.objects.get(pk=job_id)
    if job.done:
        return job.status
    job.start()
    deliveries = list(Delivery.objects.filter(pk__in=job.params["delivery_ids"])
                      .exclude(status=Delivery.Status.SENT).select_related("peer", "web"))
    try:
        return _send(self, job, deliveries)
    except Retry:
        raise
    except Exception as exc:  # ResultsError or a bug: no delivery may stay "sending" (JobTask fails the job)
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).exclude(status=Delivery.Status.SENT).update(
            status=Delivery.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
        if isinstance(exc, ResultsError):
            job.fail(str(exc))
            return job.status
        raise


def _send(task, job: Job, deliveries: list[Delivery]) -> str:
    run = AnalysisRun.objects.select_related("study", "series").get(pk=job.params["analysis_run_id"])
    results = build_results(run, job.params.get("sr_version", 1))
    failures = []
    for n, delivery in enumerate(deliveries):
        job.report(100 * n / len(deliveries), f"sending to {delivery.target}")
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.SENDING, attempts=delivery.attempts + 1)
        try:
            if delivery.peer is not None:
                send_dimse(delivery.peer, results.datasets)
            elif delivery.web is not None:
                send_stow(delivery.web, results.datasets)
            else:
                raise SendError(f"{delivery.target}: the destination was deleted")
        except SendError as exc:
            failures.append(str(exc))
            Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.PENDING, error=str(exc))
            continue
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.Status.SENT, error="", sent_at=timezone.now(),
                                                      sent_sop_instance_uids=results.sop_instance_uids)
    if not failures:
        job.finish({"sent": len(deliveries), "objects": len(results.datasets)},
                   message=f"sent {len(results.datasets)} objects to {len(deliveries)} destination(s)")
        return job.status
    if task.request.retries >= task.max_retries:
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=Delivery.Status.PENDING).update(
            status=Delivery.Status.FAILED)
        job.fail("; ".join(failures))
        return job.status
    delay = settings.LUNGSCOPE_DICOM_SEND_BACKOFF_S * 2 ** task.request.retries
    job.report(job.progress, f"{len(failures)} destination(s) failed; retrying in {delay:.1f} s: {failures[0]}")
    raise task.retry(countdown=delay)
