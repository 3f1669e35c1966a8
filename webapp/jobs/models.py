"""Background jobs: one row per Celery job so the UI and API can show progress bars and errors."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Job(models.Model):
    class Kind(models.TextChoices):
        INGEST = "ingest"
        ANALYZE = "analyze"
        EXPORT = "export"
        TRAIN = "train"

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    kind = models.CharField(max_length=16, choices=Kind.choices, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=500, blank=True)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    cancel_requested = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} {self.status} {self.progress}%"

    @property
    def done(self) -> bool:
        return self.status in {self.Status.SUCCEEDED, self.Status.FAILED, self.Status.CANCELLED}

    def start(self) -> None:
        """Mark running (again, after a redelivery) and count the attempt."""
        Job.objects.filter(pk=self.pk).update(
            status=self.Status.RUNNING, started_at=timezone.now(), attempts=models.F("attempts") + 1, error=""
        )
        self.refresh_from_db()

    def report(self, progress: float, message: str = "") -> None:
        """Write progress without touching other columns, so concurrent cancel requests are not lost."""
        progress = int(max(0, min(100, progress)))
        Job.objects.filter(pk=self.pk).update(progress=progress, message=message[:500], updated_at=timezone.now())
        self.progress, self.message = progress, message[:500]

    def finish(self, result: dict | None = None, message: str = "") -> None:
        self._end(self.Status.SUCCEEDED, result=result or {}, message=message, progress=100)

    def fail(self, error: str) -> None:
        self._end(self.Status.FAILED, error=error[:10000], message=error.splitlines()[0][:500] if error else "")

    def cancel(self, message: str = "cancelled") -> None:
        self._end(self.Status.CANCELLED, message=message)

    def is_cancel_requested(self) -> bool:
        return Job.objects.filter(pk=self.pk, cancel_requested=True).exists()

    def _end(self, status: str, **fields) -> None:
        fields.update(status=status, finished_at=timezone.now())
        Job.objects.filter(pk=self.pk).update(**fields)
        self.refresh_from_db()
