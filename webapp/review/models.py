"""Human review: the clinician's decision per study, the annotators' boxes, and the audit log.

Every editable row carries a ``version`` for optimistic concurrency: a save naming a stale version gets 409
instead of silently overwriting someone else's change. Every change writes an AuditEvent (append-only).
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.analysis.models import AnalysisRun, Finding
from webapp.studies.models import Study


class Decision(models.Model):
    class Label(models.TextChoices):
        COVID = "covid"
        CAP = "cap"
        NP = "np"
        INDETERMINATE = "indeterminate"

    study = models.OneToOneField(Study, on_delete=models.CASCADE, related_name="decision")
    label = models.CharField(max_length=16, choices=Label.choices)
    comment = models.TextField(blank=True)
    reviewed = models.BooleanField(default=False)
    version = models.PositiveIntegerField(default=1)
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    #: The reviewable state an audit event records before and after a change (``webapp.core.audit.snapshot``).
    audit_fields = ("label", "comment", "reviewed", "version", "decided_by_id")


class Box(models.Model):
    #: The reviewable state an audit event records before and after a change (``webapp.core.audit.snapshot``).
    audit_fields = ("sop_instance_uid", "x0", "y0", "x1", "y1", "patient_coords", "label", "score", "provenance",
                    "status", "version", "analysis_run_id", "updated_by_id")

    class Label(models.TextChoices):
        COVID_LESION = "covid_lesion"
        CAP_LESION = "cap_lesion"
        OTHER = "other"

    class Provenance(models.TextChoices):
        AI = "ai"
        AI_ACCEPTED = "ai_accepted"
        AI_EDITED = "ai_edited"
        HUMAN = "human"

    class Status(models.TextChoices):
        PROPOSED = "proposed"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        DELETED = "deleted"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="boxes")
    analysis_run = models.ForeignKey(AnalysisRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="boxes")
    finding = models.OneToOneField(Finding, null=True, blank=True, on_delete=models.SET_NULL, related_name="box")
    sop_instance_uid = models.CharField(max_length=64, db_index=True)
    x0 = models.IntegerField()
    y0 = models.IntegerField()
    x1 = models.IntegerField()
    y1 = models.IntegerField()
    patient_coords = models.JSONField(default=list, blank=True)
    label = models.CharField(max_length=16, choices=Label.choices)
    score = models.FloatField(null=True, blank=True)
    provenance = models.CharField(max_length=16, choices=Provenance.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PROPOSED, db_index=True)
    version = models.PositiveIntegerField(default=1)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pk"]
        verbose_name_plural = "boxes"
        constraints = [
            # Inclusive pixel indices: a box is at least one pixel, never inverted or off the image's origin.
            models.CheckConstraint(condition=models.Q(x0__gte=0, y0__gte=0, x0__lte=models.F("x1"),
                                                      y0__lte=models.F("y1")), name="box_corners_ordered"),
        ]


class AuditEvent(models.Model):
    """Who changed what, when, with the state before and after. Written by the app, never updated or deleted."""

    study = models.ForeignKey(Study, null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    action = models.CharField(max_length=50, db_index=True)  # e.g. box.update, decision.update, model.promote
    object_type = models.CharField(max_length=50)
    object_id = models.CharField(max_length=64)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit events are append-only")
