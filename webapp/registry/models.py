"""The model registry: every bundle the app can run, which one is active, and the runs that trained them."""
from __future__ import annotations

from django.conf import settings
from django.db import models, transaction


class ModelVersion(models.Model):
    name = models.CharField(max_length=100)
    version = models.CharField(max_length=50)
    bundle_path = models.CharField(max_length=500)  # folder with model.json + weights.pt
    sha256 = models.CharField(max_length=64)
    classes = models.JSONField(default=list)
    metrics = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    # Added with the training loop: where a trained version came from and its reports (storage names).
    source = models.CharField(max_length=16, default="shipped")  # shipped | trained
    dataset_version = models.ForeignKey("curation.DatasetVersion", null=True, blank=True,
                                        on_delete=models.PROTECT, related_name="model_versions")
    roc_plot = models.CharField(max_length=500, blank=True)
    training_log = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["name", "version"], name="unique_model_version"),
            models.UniqueConstraint(fields=["is_active"], condition=models.Q(is_active=True), name="one_active_model"),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    def activate(self) -> None:
        """Make this the version new analyses use (exactly one active at a time)."""
        with transaction.atomic():
            ModelVersion.objects.filter(is_active=True).exclude(pk=self.pk).update(is_active=False)
            ModelVersion.objects.filter(pk=self.pk).update(is_active=True)
        self.is_active = True


class ModelActivation(models.Model):
    """One change of the active version. ``previous`` is the activation it replaced, so rollback can walk back."""

    class Action(models.TextChoices):
        INITIAL = "initial"
        PROMOTE = "promote"
        ROLLBACK = "rollback"

    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="activations")
    previous = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    action = models.CharField(max_length=16, choices=Action.choices)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]


class TrainingRun(models.Model):
    """A retraining of a model on a frozen DatasetVersion; on success it produces one ModelVersion."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    dataset_version = models.ForeignKey("curation.DatasetVersion", on_delete=models.PROTECT,
                                        related_name="training_runs")
    job = models.OneToOneField("jobs.Job", null=True, on_delete=models.SET_NULL, related_name="training_run")
    config = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    iteration = models.PositiveIntegerField(default=0)
    total_iterations = models.PositiveIntegerField(default=0)
    last_metrics = models.JSONField(default=dict, blank=True)  # the latest progress record
    metrics_log = models.CharField(max_length=500, blank=True)  # storage name of the JSON-lines progress log
    log = models.CharField(max_length=500, blank=True)  # storage name of the training log
    model_version = models.OneToOneField(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                         related_name="training_run")
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"training run {self.pk} on dataset {self.dataset_version_id}: {self.status}"
