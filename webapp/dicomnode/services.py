"""Queueing results for the destinations: after an analysis (``sr_version`` 1) and when a review is re-sent."""
from __future__ import annotations

from django.db import transaction
from django.db.models import Max

from webapp.analysis.models import AnalysisRun
from webapp.jobs.models import Job

from .models import Delivery, DicomPeer, WebDestination


def queue_results(run: AnalysisRun, *, sr_version: int = 1, user=None) -> Job | None:
    """One Delivery per configured destination and one job that sends them; None when nothing is configured or
    this version of the run was already queued (the analysis saves a succeeded run more than once)."""
    peers = list(DicomPeer.objects.filter(is_destination=True))
    webs = list(WebDestination.objects.filter(enabled=True))
    if not peers and not webs:
        return None
    with transaction.atomic():
        if Delivery.objects.select_for_update().filter(run=run, sr_version=sr_version).exists():
            return None
        job = Job.objects.create(kind=Job.Kind.EXPORT, created_by=user if user and user.is_authenticated else None,
                                 message="queued: results to PACS")
        deliveries = [Delivery(study_id=run.study_id, run=run, peer=peer, target=f"DIMSE {peer}", job=job,
                               sr_version=sr_version) for peer in peers]
        deliveries += [Delivery(study_id=run.study_id, run=run, web=web, target=f"STOW-RS {web.url}", job=job,
                                sr_version=sr_version) for web in webs]
        created = Delivery.objects.bulk_create(deliveries)
        job.params = {"send_results": True, "analysis_run_id": run.pk, "sr_version": sr_version,
                      "delivery_ids": [d.pk for d in created]}
        job.save(update_fields=["params"])
        from .tasks import send_results

        transaction.on_commit(lambda: send_results.delay(job.pk))
    return job


def resend_review(study, user) -> Job | None:
    """Send the clinician's current decision and boxes as a new SR version (with the derived objects)."""
    run = AnalysisRun.objects.filter(study=study, status=AnalysisRun.Status.SUCCEEDED).first()
    if run is None:
        return None
    latest = Delivery.objects.filter(run=run).aggregate(v=Max("sr_version"))["v"] or 1
    return queue_results(run, sr_version=latest + 1, user=user)


def study_sent_status(study_id: int) -> str:
    """"sent" when the newest version of the results reached every destination it was queued for, else that
    version's worst state ("failed", "sending", "pending"); "" when nothing was ever queued."""
    newest = Delivery.objects.filter(study_id=study_id).order_by("-run__created_at", "-sr_version").first()
    if newest is None:
        return ""
    states = set(Delivery.objects.filter(run_id=newest.run_id, sr_version=newest.sr_version)
                 .values_list("status", flat=True))
    for state in (Delivery.Status.FAILED, Delivery.Status.SENDING, Delivery.Status.PENDING):
        if state in states:
            return state
    return Delivery.Status.SENT
