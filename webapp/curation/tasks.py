"""Celery tasks of the curation app (queue ``default``)."""
from __future__ import annotations

import traceback

from celery import shared_task

from .exports import build_export
from .models import Export


@shared_task(name="webapp.curation.tasks.run_export")
def run_export(export_id: int) -> None:
    """Build one export, reporting progress on its Job. A finished job (a redelivered message) is left alone."""
    export = Export.objects.select_related("job", "dataset_version").get(pk=export_id)
    job = export.job
    if job is None or job.done:
        return
    job.start()
    try:
        build_export(export, progress=lambda fraction, message: job.report(5 + 90 * fraction, message))
    except Exception as exc:  # the job row carries the reason to the admin; nothing is retried blindly
        job.fail(f"{exc}\n\n{traceback.format_exc()}")
        return
    job.finish(result={"export": export.pk, "size": export.size, "sha256": export.sha256},
               message=f"{export.size} bytes")
