"""API shapes for dataset versions and exports."""
from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from webapp.jobs.models import Job
from webapp.review.models import Decision

from .models import DatasetItem, DatasetVersion, Export
from .services import Criteria


class JobSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Job
        fields = ["id", "kind", "status", "progress", "message", "error", "created_at", "started_at", "finished_at"]


class DatasetItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = DatasetItem
        fields = ["study", "study_instance_uid", "series_instance_uid", "patient_id", "study_date", "final_label",
                  "ai_label", "ai_opacity_percent", "ai_outside", "reviewer", "boxes", "excluded_boxes"]


class DatasetVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = DatasetVersion
        fields = ["id", "name", "description", "criteria", "summary", "fingerprint", "created_by", "created_at"]
        read_only_fields = fields


class DatasetVersionDetailSerializer(DatasetVersionSerializer):
    items = DatasetItemSerializer(many=True, read_only=True)

    class Meta(DatasetVersionSerializer.Meta):
        fields = DatasetVersionSerializer.Meta.fields + ["items"]
        read_only_fields = fields


class DatasetVersionCreateSerializer(serializers.Serializer):
    """The selection: reviewed studies only unless ``reviewed_only`` is false; every other filter is optional."""

    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    reviewed_only = serializers.BooleanField(default=True)
    study_date_from = serializers.RegexField(r"^\d{8}$", required=False, allow_blank=True, default="",
                                             error_messages={"invalid": "use a DICOM date, YYYYMMDD"})
    study_date_to = serializers.RegexField(r"^\d{8}$", required=False, allow_blank=True, default="",
                                           error_messages={"invalid": "use a DICOM date, YYYYMMDD"})
    reviewed_from = serializers.DateField(required=False, allow_null=True, default=None)
    reviewed_to = serializers.DateField(required=False, allow_null=True, default=None)
    labels = serializers.ListField(child=serializers.ChoiceField(choices=Decision.Label.values), required=False,
                                   default=list)
    reviewers = serializers.ListField(child=serializers.CharField(max_length=150), required=False, default=list)
    study_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)

    def validate(self, attrs):
        if attrs["study_date_from"] and attrs["study_date_to"] and attrs["study_date_from"] > attrs["study_date_to"]:
            raise serializers.ValidationError({"study_date_to": "the date range ends before it starts"})
        if attrs["reviewed_from"] and attrs["reviewed_to"] and attrs["reviewed_from"] > attrs["reviewed_to"]:
            raise serializers.ValidationError({"reviewed_to": "the date range ends before it starts"})
        return attrs

    def criteria(self) -> Criteria:
        data = dict(self.validated_data)
        data.pop("name"), data.pop("description")
        return Criteria(**data)


class ExportSerializer(serializers.ModelSerializer):
    job = JobSummarySerializer(read_only=True)
    download_url = serializers.SerializerMethodField()
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = Export
        fields = ["id", "dataset_version", "format", "deidentify", "job", "size", "sha256", "summary",
                  "download_url", "created_by", "created_at"]
        read_only_fields = ["id", "job", "size", "sha256", "summary", "download_url", "created_by", "created_at"]
        extra_kwargs = {"deidentify": {"default": True}}

    def get_download_url(self, export: Export) -> str | None:
        if not export.file:
            return None
        return reverse("export-download", args=[export.pk])
