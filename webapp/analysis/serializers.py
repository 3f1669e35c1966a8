"""JSON shapes of analysis runs, their slices and findings (docs/CONTRACTS.md, REST)."""
from __future__ import annotations

from rest_framework import serializers

from webapp.jobs.serializers import JobSerializer
from webapp.registry.models import ModelVersion

from .models import AnalysisRun, Finding, SliceResult


class SliceResultSerializer(serializers.ModelSerializer):
    has_maps = serializers.SerializerMethodField()

    class Meta:
        model = SliceResult
        fields = ["index", "sop_instance_uid", "instance_number", "z_mm", "probabilities", "lung_area_px",
                  "infected_area_px", "has_maps"]

    def get_has_maps(self, obj: SliceResult) -> bool:
        """Whether the maps are stored; absent ones are computed on the first request."""
        return bool(obj.maps)


class FindingSerializer(serializers.ModelSerializer):
    index = serializers.IntegerField(source="slice.index", read_only=True)

    class Meta:
        model = Finding
        fields = ["id", "index", "sop_instance_uid", "x0", "y0", "x1", "y1", "score", "label", "patient_coords"]


class AnalysisRunSerializer(serializers.ModelSerializer):
    """One run without its per-slice rows: the study-level result and which model produced it."""

    model_version = serializers.CharField(source="model_version_label", read_only=True)
    model_version_id = serializers.PrimaryKeyRelatedField(source="model_version", read_only=True)
    series_instance_uid = serializers.CharField(source="series.series_instance_uid", read_only=True, allow_null=True,
                                                default=None)
    job = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = AnalysisRun
        fields = ["id", "study", "status", "model_name", "model_version", "model_version_id", "model_sha256",
                  "classes", "saliency_mode", "label", "probabilities", "probability", "uncertainty",
                  "infection_percent", "lung_volume_ml", "timings_s", "error", "created_at", "finished_at",
                  "series_instance_uid", "job"]
        read_only_fields = fields


class AnalysisRunDetailSerializer(AnalysisRunSerializer):
    """A run with every slice and every AI finding, what the viewer loads."""

    slices = SliceResultSerializer(many=True, read_only=True)
    findings = FindingSerializer(many=True, read_only=True)

    class Meta(AnalysisRunSerializer.Meta):
        fields = [*AnalysisRunSerializer.Meta.fields, "slices", "findings"]
        read_only_fields = fields


class AnalyzeRequestSerializer(serializers.Serializer):
    model_version = serializers.PrimaryKeyRelatedField(
        queryset=ModelVersion.objects.all(), required=False, allow_null=True,
        help_text="A registered model version to run instead of the active one.",
    )


class AnalyzeResponseSerializer(serializers.Serializer):
    job = JobSerializer(read_only=True)
    analysis_run = serializers.IntegerField(read_only=True, help_text="The id of the queued AnalysisRun.")
