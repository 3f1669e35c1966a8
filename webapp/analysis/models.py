"""AI analyses of a study: one AnalysisRun per (study, model) invocation, never overwritten.

A run keeps the study-level result, every lung slice's probabilities, the saliency/CAM maps as compact files in
the storage backend, and the AI findings (boxes). Reviewers' edits live in ``webapp.review`` and point back at
the findings they started from, so the AI's original output stays intact.
"""
from __future__ import annotations

from django.db import models

from webapp.jobs.models import Job
from webapp.studies.models import Series, Study


class AnalysisRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="analysis_runs")
    series = models.ForeignKey(Series, null=True, blank=True, on_delete=models.SET_NULL, related_name="analysis_runs")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="analysis_runs")
    model_version = models.ForeignKey(
        "registry.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="analysis_runs"
    )
    model_name = models.CharField(max_length=100)
    model_version_label = models.CharField(max_length=50, blank=True)
    model_sha256 = models.CharField(max_length=64, blank=True)
    # The bundle folder the run loaded: on-demand maps must come from the same weights (checked by model_sha256).
    bundle_path = models.CharField(max_length=500, blank=True)
    classes = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    saliency_mode = models.CharField(max_length=16, default="positive")
    label = models.CharField(max_length=16, blank=True, db_index=True)
    probabilities = models.JSONField(default=dict, blank=True)
    probability = models.FloatField(null=True, blank=True)  # probability of ``label``
    uncertainty = models.FloatField(null=True, blank=True, db_index=True)  # 1 - max probability
    infection_percent = models.FloatField(null=True, blank=True)
    # lungscope.analysis/2: opacity measured in HU inside the lungs (percent of lung volume; high = consolidation),
    # the severity figure the worklist shows; null for runs of the /1 schema.
    opacity_percent = models.FloatField(null=True, blank=True)
    high_opacity_percent = models.FloatField(null=True, blank=True)
    # The domain model's verdict: outside = the study is unlike what the model was trained on, so its AI result is
    # unreliable. Null when the bundle has no domain model.
    domain_score = models.FloatField(null=True, blank=True)
    domain_outside = models.BooleanField(null=True, blank=True, db_index=True)
    lung_volume_ml = models.FloatField(null=True, blank=True)
    timings_s = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)  # the lungscope.analysis/2 object (/1 for older runs)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"run {self.pk} of study {self.study_id}: {self.label or self.status}"


class SliceResult(models.Model):
    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="slices")
    index = models.PositiveIntegerField()  # position in the series' spatial order
    sop_instance_uid = models.CharField(max_length=64, db_index=True)
    instance_number = models.IntegerField(null=True, blank=True)
    z_mm = models.FloatField(null=True, blank=True)
    probabilities = models.JSONField(default=dict)
    lung_area_px = models.PositiveIntegerField(default=0)
    infected_area_px = models.PositiveIntegerField(default=0)
    opacity_px = models.PositiveIntegerField(default=0)  # GGO + consolidation pixels (schema /2; 0 before)
    # npz of float16 maps at original resolution: joint, conv3..5 (IG), cam3..5, lung, opacity labels.
    maps = models.FileField(max_length=255, blank=True)

    class Meta:
        ordering = ["index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="unique_slice_per_run")]


class Finding(models.Model):
    """An AI box, as the model produced it. Immutable; review.Box carries the edits."""

    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="findings")
    slice = models.ForeignKey(SliceResult, on_delete=models.CASCADE, related_name="findings")
    sop_instance_uid = models.CharField(max_length=64)
    x0 = models.IntegerField()
    y0 = models.IntegerField()
    x1 = models.IntegerField()
    y1 = models.IntegerField()
    score = models.FloatField()
    label = models.CharField(max_length=16)  # predicted class of the slice, e.g. COVID
    patient_coords = models.JSONField(default=list, blank=True)  # [[X, Y, Z] mm] of the four corners

    class Meta:
        ordering = ["slice__index", "-score"]
