"""The ingest job: a zip uploaded through the API, unpacked and ingested by a worker on the ``default`` queue.

The upload view saves the archive under ``uploads/`` in the storage backend and queues ``ingest_upload`` with
the job's id. Running it twice is harmless (acks_late redelivers after a crash): files already stored come back
as duplicates. Transient failures (database or storage unreachable) are retried with exponential back-off;
when retries run out the job is marked failed. The archive is deleted once the job has ended either way.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage
from django.db import InterfaceError, OperationalError

from webapp.celery import app
from webapp.core.jobtask import JobTask
from webapp.jobs.models import Job

from .ingest import IngestBatch
from .serializers import IngestResultSerializer

TRANSIENT_ERRORS = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
RESULT_ROWS_KEPT = 1000  # per-file rows kept in Job.result; counts cover everything


class IngestTask(JobTask):
    """Deletes the uploaded archive when the job finally fails, so failed uploads leave nothing behind."""

    abstract = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        super().on_failure(exc, task_id, args, kwargs, einfo)
        job = Job.objects.filter(pk=args[0] if args else kwargs.get("job_id")).first()
        if job is not None and job.params.get("upload"):
            default_storage.delete(job.params["upload"])


@app.task(base=IngestTask, bind=True, queue="default", autoretry_for=TRANSIENT_ERRORS, retry_backoff=True,
          retry_backoff_max=300, retry_jitter=True, max_retries=5)
def ingest_upload(self, job_id: int) -> None:
    job = Job.objects.get(pk=job_id)
    if job.done:
        return  # a redelivered message for a job that already ended
    job.start()
    upload = job.params["upload"]
    user = get_user_model().objects.filter(pk=job.created_by_id).first()

    def progress(done: int, total: int) -> None:
        job.report(100 * done / max(total, 1) if done < total else 99, f"{done} of {total} files")

    with default_storage.open(upload, "rb") as archive, IngestBatch(user) as batch:
        batch.add_archive(archive, job.params.get("name", upload), progress=progress)
    counts = batch.counts()
    job.finish(
        result={"counts": counts,
                "results": IngestResultSerializer(batch.results[:RESULT_ROWS_KEPT], many=True).data},
        message=", ".join(f"{n} {status}" for status, n in counts.items() if n),
    )
    default_storage.delete(upload)
