"""The ingest job: a zip uploaded through the API, unpacked and ingested by a worker on the ``default`` queue.

The upload view saves the archive under ``uploads/`` in the storage backend and queues ``ingest_upload`` with
the job's id. Running it twice is harmless (acks_late redelivers after a crash): files already stored come back
as duplicates. Failures follow the one policy of ``webapp.core.jobtask.JobTask`` (transient ones retried with
exponential back-off, then the job fails). The archive is deleted once the job has ended either way.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.files.storage import default_storage

from webapp.celery import app
from webapp.core.jobtask import JobTask
from webapp.jobs.models import Job

from .ingest import IngestBatch
from .serializers import IngestResultSerializer

RESULT_ROWS_KEPT = 1000  # per-file rows kept in Job.result; counts cover everything


@app.task(base=JobTask, bind=True, queue="default")
def ingest_upload(self, job_id: int) -> None:
    job = Job.objects.get(pk=job_id)
    if job.done:
        return  # a redelivered message for a job that already ended
    upload = job.params["upload"]

    def fail(reason: str, details: str) -> None:
        """A failed upload leaves nothing behind."""
        job.fail(f"{reason}\n\n{details}".strip())
        default_storage.delete(upload)

    def progress(done: int, total: int) -> None:
        job.report(100 * done / max(total, 1) if done < total else 99, f"{done} of {total} files")

    with self.running(job, fail=fail):
        user = get_user_model().objects.filter(pk=job.created_by_id).first()
        with default_storage.open(upload, "rb") as archive, IngestBatch(user) as batch:
            batch.add_archive(archive, job.params.get("name", upload), progress=progress)
        counts = batch.counts()
        job.finish(
            result={"counts": counts,
                    "results": IngestResultSerializer(batch.results[:RESULT_ROWS_KEPT], many=True).data},
            message=", ".join(f"{n} {status}" for status, n in counts.items() if n),
        )
        default_storage.delete(upload)
