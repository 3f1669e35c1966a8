"""One analysis per study, once the study is stable: the rule every way in shares (Orthanc's stable-study event).

Ingest sends ``instances_received`` (received by ``tasks.study_received``) after a delivery's instances of a study
are committed, whatever brought them (upload, zip job, STOW-RS, ``import_dicom``, a DIMSE association), so the rule
lives here and not in each caller.
A study has at most one automatic run waiting to start: the first delivery queues it, later ones find it waiting
and add nothing. The run's task starts it only once no instance has arrived for ``LUNGSCOPE_STABLE_STUDY_S``
seconds and otherwise puts it back for the time that is left (``start_when_stable``). That check and the switch to
running happen under the study's row lock, which ``study_received`` takes too: instances that arrive after the
switch find no waiting run and queue exactly one follow-up, however many deliveries bring them.
"""
from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from webapp.studies.models import Instance, Study

from . import services
from .models import AnalysisRun

#: Job parameter of an automatic run: the quiet seconds its study needs before the run starts.
STABLE_AFTER = "stable_after_s"


def seconds_until_stable(study_id: int, quiet_s: float) -> float:
    """How long until the study's newest instance is ``quiet_s`` seconds old (0 or less: stable now)."""
    newest = Instance.objects.filter(series__study_id=study_id).aggregate(newest=Max("created_at"))["newest"]
    if newest is None:
        return 0.0
    return quiet_s - (timezone.now() - newest).total_seconds()


def start_when_stable(run: AnalysisRun) -> float:
    """Mark ``run`` running and return 0 when it may start; else leave it queued and return the seconds to wait.

    Runs asked for by a person (no ``STABLE_AFTER``) and redeliveries of a started run start at once.
    """
    quiet_s = (run.job.params or {}).get(STABLE_AFTER) if run.job else None
    with transaction.atomic():
        Study.objects.select_for_update().filter(pk=run.study_id).first()
        if quiet_s and run.status == AnalysisRun.Status.QUEUED:
            remaining = seconds_until_stable(run.study_id, quiet_s)
            if remaining > 0:
                return remaining
        services.mark_running(run)
    return 0.0
