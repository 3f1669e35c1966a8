"""Curated, frozen datasets and their exports.

A DatasetVersion is a snapshot: every study's final (clinician) label and the boxes that survived review are
copied into DatasetItem rows when the version is created, so later edits to a study never change a version that
was already exported or trained on. The fingerprint is the sha256 of the canonical JSON of that content; two
versions with the same content have the same fingerprint whoever made them and whenever.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models

from webapp.jobs.models import Job
from webapp.studies.models import Study


class FrozenRowError(RuntimeError):
    """Raised on an attempt to change a frozen dataset row."""


class _Frozen(models.Model):
    """Rows written once at creation; updates and deletes of single rows are refused."""

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise FrozenRowError(f"{type(self).__name__} rows are immutable once created")
        super().save(*args, **kwargs)


class DatasetVersion(_Frozen):
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    criteria = models.JSONField(default=dict, blank=True)  # the selection the admin asked for, normalised
    summary = models.JSONField(default=dict, blank=True)  # counts per class / provenance, excluded boxes, reviewers
    fingerprint = models.CharField(max_length=64, db_index=True)  # sha256 of the canonical content JSON
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.fingerprint[:12]})"


class DatasetItem(_Frozen):
    """One study as it was when the version was frozen."""

    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="items")
    # Kept for reaching the DICOM files at export time; the frozen fields below never follow the study's edits.
    study = models.ForeignKey(Study, null=True, on_delete=models.SET_NULL, related_name="+")
    study_instance_uid = models.CharField(max_length=64)
    series_instance_uid = models.CharField(max_length=64)
    sop_instance_uids = models.JSONField(default=list)  # the series' instances in spatial order at freeze time
    patient_id = models.CharField(max_length=64)
    study_date = models.CharField(max_length=8, blank=True)
    final_label = models.CharField(max_length=16)  # the clinician's Decision label
    ai_label = models.CharField(max_length=16, blank=True)  # the AI's study label, for agreement statistics
    # The AI's opacity % (lungscope.analysis/2) and whether it found the study outside its experience: a training
    # set can leave out or weigh the studies the model could not judge. Null when the run did not say.
    ai_opacity_percent = models.FloatField(null=True, blank=True)
    ai_outside = models.BooleanField(null=True, blank=True)
    reviewer = models.CharField(max_length=150, blank=True)
    boxes = models.JSONField(default=list)  # surviving boxes: id, sop_instance_uid, x0..y1, label, provenance
    excluded_boxes = models.JSONField(default=dict)  # {"rejected": n, "deleted": n, "unreviewed": n}

    class Meta:
        ordering = ["study_instance_uid"]
        constraints = [
            models.UniqueConstraint(fields=["dataset_version", "study_instance_uid"], name="one_item_per_study")
        ]


class Export(models.Model):
    class Format(models.TextChoices):
        TRAINING_READY = "training_ready"
        COCO = "coco"
        SR = "sr"
        CSV = "csv"

    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="exports")
    format = models.CharField(max_length=16, choices=Format.choices)
    deidentify = models.BooleanField(default=True)
    job = models.OneToOneField(Job, null=True, on_delete=models.SET_NULL, related_name="export")
    file = models.FileField(max_length=255, blank=True)  # the zip in the storage backend
    size = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    summary = models.JSONField(default=dict, blank=True)  # what went in: members, studies, skipped with reasons
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"export {self.pk} of {self.dataset_version_id} as {self.format}"

    @property
    def download_name(self) -> str:
        suffix = "deid" if self.deidentify else "identified"
        return f"lungscope-dataset{self.dataset_version_id}-{self.format}-{suffix}-{self.pk}.zip"
