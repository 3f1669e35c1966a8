"""The hospital network as lungscope sees it: DICOM peers (AE titles) and DICOMweb destinations, and one
``Delivery`` row per (analysis run or re-sent review, destination) that says whether the results reached it.

A peer may be allowed to send to the listener (the calling-AE allow-list), be a destination for results
(C-STORE SCU), or both. Only admins configure them (admin UI, ``/api/dicom/``, ``manage.py dicom_peer``).
"""
from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from webapp.analysis.models import AnalysisRun
from webapp.jobs.models import Job
from webapp.studies.models import Study

#: PS3.5 AE: up to 16 characters of the default repertoire, no backslash or control characters, not all spaces.
AE_TITLE = RegexValidator(r"^(?! *$)[\x20-\x5b\x5d-\x7e]{1,16}$", "an AE title is 1 to 16 printable characters, "
                          "no backslash, not only spaces")


class DicomPeer(models.Model):
    ae_title = models.CharField(max_length=16, unique=True, validators=[AE_TITLE])
    host = models.CharField(max_length=255, blank=True, help_text="needed when the peer is a destination")
    port = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1),
                                                                          MaxValueValidator(65535)])
    description = models.CharField(max_length=200, blank=True)
    may_send = models.BooleanField(default=True, help_text="on the allow-list: the listener accepts its associations")
    is_destination = models.BooleanField(default=False, help_text="results are sent to it with C-STORE")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ae_title"]
        verbose_name = "DICOM peer"
        constraints = [models.CheckConstraint(
            condition=~models.Q(is_destination=True) | (~models.Q(host="") & models.Q(port__isnull=False)),
            name="destination_has_address", violation_error_message="a destination needs a host and a port")]

    def __str__(self) -> str:
        return f"{self.ae_title} ({self.host}:{self.port})" if self.host else self.ae_title


class WebDestination(models.Model):
    """A DICOMweb server that receives results by STOW-RS (``{url}/studies``)."""

    name = models.CharField(max_length=64, unique=True)
    url = models.URLField(help_text="the DICOMweb root, e.g. http://pacs:8042/dicom-web")
    authorization = models.CharField(max_length=500, blank=True,
                                     help_text="Authorization header value, e.g. 'Bearer ...' (blank: none)")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "DICOMweb destination"

    def __str__(self) -> str:
        return f"{self.name} ({self.url})"


class Delivery(models.Model):
    """The results of one analysis run (``sr_version`` 1) or one re-sent review (2, 3, ...) to one destination."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="deliveries")
    run = models.ForeignKey(AnalysisRun, on_delete=models.CASCADE, related_name="deliveries")
    peer = models.ForeignKey(DicomPeer, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    web = models.ForeignKey(WebDestination, null=True, blank=True, on_delete=models.SET_NULL,
                            related_name="deliveries")
    target = models.CharField(max_length=300)  # the destination as it was when sent, kept if it is deleted
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    sr_version = models.PositiveIntegerField(default=1)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    sent_sop_instance_uids = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["run", "peer", "sr_version"], name="one_delivery_per_run_peer"),
            models.UniqueConstraint(fields=["run", "web", "sr_version"], name="one_delivery_per_run_web"),
        ]

    def __str__(self) -> str:
        return f"results of run {self.run_id} v{self.sr_version} to {self.target}: {self.status}"
