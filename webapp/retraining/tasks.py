"""Celery tasks of retraining (routed to the ``gpu`` queue by ``CELERY_TASK_ROUTES``)."""
from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from webapp.core.jobtask import JobTask
from webapp.curation.exporters import ExportError
from webapp.registry.models import TrainingRun

from .training import run_training


@shared_task(bind=True, base=JobTask, name="webapp.retraining.tasks.train_model", job_owner="registry.TrainingRun",
             permanent_errors=(ExportError,))
def train_model(self, run_id: int) -> str:
    """Run TrainingRun ``run_id``; a run that was cancelled or finished meanwhile is left alone. Failures follow
    ``JobTask``'s policy (a dataset that cannot be exported fails at once); the run and its job carry the reason to
    the admin."""
    run = TrainingRun.objects.select_related("job", "dataset_version", "created_by").filter(pk=run_id).first()
    if run is None or run.job is None:
        return "missing"
    if run.job.is_cancel_requested() and run.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.CANCELLED, finished_at=timezone.now())
        run.job.cancel("cancelled before it started")
        return TrainingRun.Status.CANCELLED
    started = TrainingRun.objects.filter(
        pk=run.pk, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    ).update(status=TrainingRun.Status.RUNNING, started_at=timezone.now())
    if not started:
        return run.status
    run.refresh_from_db()

    def fail(reason: str, details: str) -> None:
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED, error=reason[:10000],
                                                     finished_at=timezone.now())
        run.job.fail(f"{reason}\n\n{details}".strip())

    with self.running(run.job, fail=fail):
        run_training(run)
    run.refresh_from_db()
    return run.status
