"""Celery tasks of retraining (routed to the ``gpu`` queue by ``CELERY_TASK_ROUTES``)."""
from __future__ import annotations

import traceback

from celery import shared_task
from django.utils import timezone

from webapp.registry.models import TrainingRun

from .training import run_training


@shared_task(name="webapp.retraining.tasks.train_model")
def train_model(run_id: int) -> str:
    """Run TrainingRun ``run_id``; a run that was cancelled or finished meanwhile is left alone."""
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
    run.job.start()
    try:
        run_training(run)
    except Exception as exc:  # the run and job carry the reason to the admin
        TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.FAILED, error=str(exc)[:10000],
                                                     finished_at=timezone.now())
        run.job.fail(f"{exc}\n\n{traceback.format_exc()}")
        return TrainingRun.Status.FAILED
    run.refresh_from_db()
    return run.status
