"""The base of every Celery task that drives a ``Job`` row (analysis, ingest, export, training, results to PACS).

One policy for all of them, in ``JobTask.running``: the job is started (its attempt counted), the body reports
progress and finishes the job, and whatever the body raises ends in one of three ways:

- an error of ``permanent_errors`` (an input no retry can fix: no CT series, a bad dataset) fails the job at once
  with its message;
- a transient error (``transient_errors()``: storage, network or database away, GPU out of memory) is retried with
  exponential back-off (``retry_backoff_s`` * 2^n) at most ``max_retries`` times, then fails the job, saying so;
- anything else is a bug: it fails the job with the traceback, not retried.

Delivery is at-least-once (``acks_late``: a worker killed mid-run leaves the message for another), so job tasks are
idempotent. When Celery itself gives up on a task (an exception outside ``running``) ``on_failure`` marks the job
failed, so no job stays "running" forever. The Job model is looked up by label: this module imports no app.
"""
from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery import Task
from celery.exceptions import Retry
from django.apps import apps
from django.db import InterfaceError, OperationalError

logger = logging.getLogger(__name__)

#: Failures that may pass: storage and network (OSError covers ConnectionError and TimeoutError) and the database.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OSError, OperationalError, InterfaceError)

#: What a task does with a final failure: (reason, one line or a few; details, e.g. a traceback).
Fail = Callable[[str, str], None]


def transient_errors() -> tuple[type[BaseException], ...]:
    """TRANSIENT_ERRORS, and GPU out-of-memory where torch is loaded (no torch, no CUDA error to catch; the web
    process and the ingest worker never import it for this)."""
    torch = sys.modules.get("torch")
    return (*TRANSIENT_ERRORS, torch.cuda.OutOfMemoryError) if torch is not None else TRANSIENT_ERRORS


class JobTask(Task):
    abstract = True
    acks_late = True
    reject_on_worker_lost = True
    max_retries = 3
    #: Seconds before the first retry; each further retry waits twice as long (2, 4, 8 s).
    retry_backoff_s = 2.0
    #: Errors no retry can fix: the job fails at once with the message alone.
    permanent_errors: tuple[type[BaseException], ...] = ()
    #: The model ("app.Model") whose row the task's first argument names and whose ``job`` is the task's Job;
    #: None when the first argument is the Job's own id. (Set per task: ``@shared_task(base=JobTask, job_owner=...)``.)
    job_owner: str | None = None

    @contextmanager
    def running(self, job, fail: Fail | None = None, start: bool = True) -> Iterator[None]:
        """Run the body as one attempt of ``job`` (None: a run without a job row) under the policy above.

        ``fail`` records a final failure (default: on the job, reason and details); ``start=False`` where the task
        has started the job itself.
        """
        fail = fail or (lambda reason, details: job.fail(f"{reason}\n\n{details}".strip()))
        if start:
            job.start()
        try:
            yield
        except Retry:
            raise
        except self.permanent_errors as exc:
            fail(str(exc), "")
        except transient_errors() as exc:
            attempt = self.request.retries + 1
            if self.request.retries >= self.max_retries:
                fail(f"{exc} (gave up after {attempt} attempts)", traceback.format_exc())
                return
            delay = self.retry_backoff_s * 2 ** self.request.retries
            logger.warning("%s attempt %s failed (%s); retrying in %.0f s", self.name, attempt, exc, delay)
            if job is not None:
                job.report(job.progress, f"attempt {attempt} failed ({exc}); retrying in {delay:.0f} s")
            raise self.retry(exc=exc, countdown=delay) from exc
        except Exception as exc:  # a bug: recorded, so the job does not stay running forever
            logger.exception("%s failed", self.name)
            fail(f"internal error: {type(exc).__name__}: {exc}", traceback.format_exc())

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        key = args[0] if args else next(iter(kwargs.values()), None)
        if self.job_owner is None:
            job = apps.get_model("jobs", "Job").objects.filter(pk=key).first()
        else:
            owner = apps.get_model(self.job_owner).objects.select_related("job").filter(pk=key).first()
            job = owner.job if owner is not None else None
        if job is not None and not job.done:
            job.fail(f"{type(exc).__name__}: {exc}\n\n{einfo}")
