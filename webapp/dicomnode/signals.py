"""The results-back trigger: when an analysis run is saved as succeeded, queue its results for the destinations
once its transaction commits (the run's boxes are written in the same transaction, after the run row)."""
from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from webapp.analysis.models import AnalysisRun

logger = logging.getLogger(__name__)


@receiver(post_save, sender=AnalysisRun, dispatch_uid="dicomnode-results-back")
def analysis_saved(sender, instance: AnalysisRun, **kwargs) -> None:
    if instance.status != AnalysisRun.Status.SUCCEEDED:
        return
    transaction.on_commit(lambda: _queue(instance.pk))


def _queue(run_id: int) -> None:
    from .services import queue_results

    run = AnalysisRun.objects.filter(pk=run_id, status=AnalysisRun.Status.SUCCEEDED).first()
    if run is None:
        return
    try:
        queue_results(run)
    except Exception:  # the analysis stays succeeded whatever happens to the sending
        logger.exception("could not queue the results of analysis run %s for the destinations", run_id)
