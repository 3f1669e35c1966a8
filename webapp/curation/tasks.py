"""Celery tasks of the curation app (queue ``default``)."""
from __future__ import annotations

from celery import shared_task

from webapp.core.jobtask import JobTask

from .exporters import ExportError
from .exports import build_export
from .models import Export


@shared_task(bind=True, base=JobTask, name="webapp.curation.tasks.run_export", job_owner="curation.Export",
             permanent_errors=(ExportError,))
def run_export(self, export_id: int) -> None:
    """Build one export, reporting progress on its Job (``JobTask``: an ExportError fails it at once, transient
    errors are retried). A finished job (a redelivered message) is left alone."""
    export = Export.objects.select_related("job", "dataset_version").get(pk=export_id)
    job = export.job
    if job is None or job.done:
        return
    with self.running(job):
        build_export(export, progress=lambda fraction, message: job.report(5 + 90 * fraction, message))
        job.finish(result={"export": export.pk, "size": export.size, "sha256": export.sha256},
                   message=f"{export.size} bytes")
