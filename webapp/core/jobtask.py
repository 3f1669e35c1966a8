"""The Celery base class for tasks that drive a ``Job`` row.

A job task takes the job's id as its first argument. When Celery gives up on it (an exception that is not
retried, or retries exhausted) the job is marked failed with the error, so no job stays "running" forever.
"""
from __future__ import annotations

from celery import Task
from django.apps import apps


class JobTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        job = apps.get_model("jobs", "Job").objects.filter(pk=job_id).first()
        if job is not None and not job.done:
            job.fail(f"{type(exc).__name__}: {exc}\n\n{einfo}")
