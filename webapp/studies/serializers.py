"""Request and response shapes of the upload API (CONTRACTS.md: ``POST /api/uploads/``)."""
from __future__ import annotations

from rest_framework import serializers

from webapp.jobs.serializers import JobSerializer

from .ingest import Outcome


class UploadRequestSerializer(serializers.Serializer):
    files = serializers.ListField(child=serializers.FileField(allow_empty_file=True), allow_empty=False,
                                  help_text="DICOM files (a browser folder upload sends many) or .zip archives")


class IngestResultSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=[o.value for o in Outcome])
    reason = serializers.CharField(allow_blank=True)
    sop_instance_uid = serializers.CharField(allow_blank=True)
    study_instance_uid = serializers.CharField(allow_blank=True)


class UploadResponseSerializer(serializers.Serializer):
    results = IngestResultSerializer(many=True, help_text="one row per plain file, ingested during the request")
    jobs = JobSerializer(many=True, help_text="one ingest job per zip archive, unpacked by a worker")
