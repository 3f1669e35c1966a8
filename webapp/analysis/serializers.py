"""JSON shapes of analysis runs, their slices and findings (docs/CONTRACTS.md, REST)."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from webapp.jobs.serializers import JobSerializer
from webapp.registry.models import ModelVersion

from .models import AnalysisRun, Finding, SliceResult


class SliceResultSerializer(serializers.ModelSerializer):
    has_maps = serializers.SerializerMethodField()

    class Meta:
        model = SliceResult
        fields = ["index", "sop_instance_uid", "instance_number", "z_mm", "probabilities", "lung_area_px",
                  "infected_area_px", "opacity_px", "has_maps"]

    def get_has_maps(self, obj: SliceResult) -> bool:
        """Whether the maps are stored; absent ones are computed on the first request."""
        return bool(obj.maps)


class FindingSerializer(serializers.ModelSerializer):
    index = serializers.IntegerField(source="slice.index", read_only=True)

    class Meta:
        model = Finding
        fields = ["id", "index", "sop_instance_uid", "x0", "y0", "x1", "y1", "score", "label", "patient_coords"]


class PerLungSerializer(serializers.Serializer):
    left = serializers.FloatField()
    right = serializers.FloatField()


class OpacitySerializer(serializers.Serializer):
    percent = serializers.FloatField(help_text="GGO + consolidation, percent of lung volume.")
    high_percent = serializers.FloatField(help_text="Consolidation (high opacity), percent of lung volume.")
    per_lung = PerLungSerializer(help_text="Opacity percent of each lung's volume.")


class DomainSerializer(serializers.Serializer):
    score = serializers.FloatField()
    threshold = serializers.FloatField()
    outside = serializers.BooleanField(help_text="Outside the model's experience: the AI result is unreliable.")


class CalibrationSerializer(serializers.Serializer):
    temperature = serializers.FloatField()


class AnalysisRunSerializer(serializers.ModelSerializer):
    """One run without its per-slice rows: the study-level result and which model produced it."""

    model_version = serializers.CharField(source="model_version_label", read_only=True)
    model_version_id = serializers.PrimaryKeyRelatedField(source="model_version", read_only=True)
    series_instance_uid = serializers.CharField(source="series.series_instance_uid", read_only=True, allow_null=True,
                                                default=None)
    job = serializers.PrimaryKeyRelatedField(read_only=True)
    opacity = serializers.SerializerMethodField()
    domain = serializers.SerializerMethodField()
    calibration = serializers.SerializerMethodField()
    classifier_probabilities = serializers.SerializerMethodField()

    class Meta:
        model = AnalysisRun
        fields = ["id", "study", "status", "model_name", "model_version", "model_version_id", "model_sha256",
                  "classes", "saliency_mode", "label", "probabilities", "probability", "uncertainty",
                  "infection_percent", "opacity_percent", "high_opacity_percent", "domain_score", "domain_outside",
                  "opacity", "domain", "calibration", "classifier_probabilities", "lung_volume_ml", "timings_s",
                  "error", "created_at", "finished_at", "series_instance_uid", "job"]
        read_only_fields = fields

    @extend_schema_field(OpacitySerializer(allow_null=True))
    def get_opacity(self, run: AnalysisRun) -> dict | None:
        """Opacity % of lung volume, total, high (consolidation) and per lung; null before schema /2."""
        return run.result.get("opacity")

    @extend_schema_field(DomainSerializer(allow_null=True))
    def get_domain(self, run: AnalysisRun) -> dict | None:
        """The domain model's score against its threshold; null when the model has no domain model."""
        return run.result.get("domain")

    @extend_schema_field(CalibrationSerializer(allow_null=True))
    def get_calibration(self, run: AnalysisRun) -> dict | None:
        """The temperature that calibrated the probabilities; null when the model was not calibrated."""
        return (run.result.get("model") or {}).get("calibration")

    @extend_schema_field(serializers.DictField(child=serializers.FloatField(), allow_null=True))
    def get_classifier_probabilities(self, run: AnalysisRun) -> dict | None:
        """The classifier's own study probabilities where the model decided the study with the HU opacity too
        (``probabilities`` and ``label`` are then that decision); null where they are the classifier's."""
        return (run.result.get("prediction") or {}).get("classifier_probabilities")


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
