"""The DICOM information model: Patient > Study > Series > Instance, keyed by DICOM UIDs.

Rows hold the tags that the worklist and QIDO-RS match on; the files themselves live in the storage backend
(``Instance.file``), with their size and sha256 so a re-sent file can be recognised as the same bytes.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models


class Patient(models.Model):
    patient_id = models.CharField(max_length=64, unique=True, db_index=True)
    name = models.CharField(max_length=324, blank=True)
    birth_date = models.CharField(max_length=8, blank=True)
    sex = models.CharField(max_length=16, blank=True)

    def __str__(self) -> str:
        return self.patient_id


class Study(models.Model):
    class Status(models.TextChoices):
        NEW = "new"
        ANALYSING = "analysing"
        AI_DONE = "ai_done"
        IN_REVIEW = "in_review"
        REVIEWED = "reviewed"
        FAILED = "failed"

    study_instance_uid = models.CharField(max_length=64, unique=True, db_index=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_date = models.CharField(max_length=8, blank=True, db_index=True)
    study_time = models.CharField(max_length=16, blank=True)
    study_description = models.CharField(max_length=64, blank=True)
    accession_number = models.CharField(max_length=16, blank=True, db_index=True)
    referring_physician = models.CharField(max_length=324, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    # Label carried in by a research import (import_images --label) or the phantom's ground truth; not a diagnosis.
    source_label = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW, db_index=True)
    # The latest succeeded AI analysis's result, copied from its AnalysisRun whenever the study's runs change
    # (webapp.analysis.columns.refresh_ai_columns): the worklist filters and sorts on these columns instead of
    # looking up every study's runs per request. Null until an analysis succeeds.
    ai_label = models.CharField(max_length=16, null=True, blank=True)
    ai_probability = models.FloatField(null=True, blank=True)
    ai_uncertainty = models.FloatField(null=True, blank=True)  # 1 - max probability
    infection_percent = models.FloatField(null=True, blank=True)
    opacity_percent = models.FloatField(null=True, blank=True)  # the severity shown: opacity % of lung volume
    # The latest succeeded run found the study outside the model's experience (False without a domain verdict), so
    # "least certain first" can put such studies at the top.
    ai_outside = models.BooleanField(default=False)  # indexed with ai_uncertainty by migration 0003 (PostgreSQL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "studies"
        # The worklist's "least certain first" indexes (ai_outside DESC/ASC, ai_uncertainty DESC/ASC NULLS LAST,
        # id DESC) and opacity indexes (opacity_percent DESC/ASC NULLS LAST, id DESC) are created by migration 0003
        # on PostgreSQL only: SQLite (the demo's database) cannot index with NULLS LAST.

    def __str__(self) -> str:
        return self.study_instance_uid


class Series(models.Model):
    series_instance_uid = models.CharField(max_length=64, unique=True, db_index=True)
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    modality = models.CharField(max_length=16, db_index=True)
    series_number = models.IntegerField(null=True, blank=True)
    series_description = models.CharField(max_length=64, blank=True)
    body_part_examined = models.CharField(max_length=16, blank=True)
    frame_of_reference_uid = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["series_number", "pk"]
        verbose_name_plural = "series"

    def __str__(self) -> str:
        return self.series_instance_uid


class Instance(models.Model):
    sop_instance_uid = models.CharField(max_length=64, unique=True, db_index=True)
    sop_class_uid = models.CharField(max_length=64)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    instance_number = models.IntegerField(null=True, blank=True)
    image_position_patient = models.JSONField(null=True, blank=True)  # [x, y, z] mm
    image_orientation_patient = models.JSONField(null=True, blank=True)  # 6 direction cosines
    pixel_spacing = models.JSONField(null=True, blank=True)  # [row, column] mm
    slice_thickness = models.FloatField(null=True, blank=True)
    slice_location = models.FloatField(null=True, blank=True)
    rows = models.PositiveIntegerField()
    columns = models.PositiveIntegerField()
    number_of_frames = models.PositiveIntegerField(default=1)
    transfer_syntax_uid = models.CharField(max_length=64)
    file = models.FileField(max_length=255)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["instance_number", "pk"]

    def __str__(self) -> str:
        return self.sop_instance_uid
