"""API shapes of the worklist, study detail, boxes, decisions and audit events (docs/CONTRACTS.md)."""
from __future__ import annotations

from typing import Any

from rest_framework import serializers

from webapp.analysis.models import AnalysisRun
from webapp.studies.identity import MASK, sees_patient_identity
from webapp.studies.models import Instance, Series, Study

from . import geometry
from .models import AuditEvent, Box, Decision


class WorklistRowSerializer(serializers.ModelSerializer):
    """One worklist row. Patient identity is shown only to clinicians (and admins); everyone else sees a mask."""

    patient_id = serializers.CharField(source="patient.patient_id")
    patient_name = serializers.CharField(source="patient.name")
    ai_label = serializers.CharField(allow_null=True)
    ai_probability = serializers.FloatField(allow_null=True)
    ai_uncertainty = serializers.FloatField(allow_null=True)
    infection_percent = serializers.FloatField(allow_null=True)
    opacity_percent = serializers.FloatField(allow_null=True)
    reviewer = serializers.CharField(source="decision.decided_by.username", default=None, allow_null=True)
    decision_label = serializers.CharField(source="decision.label", default=None, allow_null=True)

    class Meta:
        model = Study
        fields = ["id", "study_instance_uid", "patient_id", "patient_name", "study_date", "accession_number",
                  "study_description", "status", "ai_label", "ai_probability", "ai_uncertainty",
                  "infection_percent", "opacity_percent", "ai_outside", "reviewer", "decision_label", "updated_at"]
        read_only_fields = fields

    def to_representation(self, study: Study) -> dict[str, Any]:
        row = super().to_representation(study)
        if not sees_patient_identity(self.context["request"].user):
            row["patient_id"] = row["patient_name"] = MASK
        return row


class InstanceSerializer(serializers.ModelSerializer):
    z_mm = serializers.SerializerMethodField()

    class Meta:
        model = Instance
        fields = ["sop_instance_uid", "instance_number", "z_mm", "rows", "columns"]

    def get_z_mm(self, instance: Instance) -> float | None:
        z = geometry.z_mm(instance)
        return None if z is None else round(z, 3)


class SeriesSerializer(serializers.ModelSerializer):
    instances = serializers.SerializerMethodField(help_text="In spatial order along the slice normal.")

    class Meta:
        model = Series
        fields = ["series_instance_uid", "modality", "series_description", "instances"]

    def get_instances(self, series: Series) -> list[dict[str, Any]]:
        return InstanceSerializer(geometry.spatial_order(series.instances.all()), many=True).data


class AnalysisSummarySerializer(serializers.ModelSerializer):
    model_version = serializers.CharField(source="model_version_label")

    class Meta:
        model = AnalysisRun
        fields = ["id", "status", "model_name", "model_version", "label", "probability", "probabilities",
                  "uncertainty", "infection_percent", "opacity_percent", "high_opacity_percent", "domain_outside",
                  "lung_volume_ml", "error", "created_at", "finished_at"]


class DecisionSerializer(serializers.ModelSerializer):
    decided_by = serializers.CharField(source="decided_by.username", default=None, read_only=True, allow_null=True)
    comment = serializers.CharField(required=False, allow_blank=True, default="")

    class Meta:
        model = Decision
        fields = ["study", "label", "comment", "reviewed", "version", "decided_by", "updated_at"]
        read_only_fields = ["study", "reviewed", "version", "updated_at"]


def decision_or_placeholder(study: Study) -> Decision:
    """The study's decision, or an unsaved version-0 one: a PUT naming version 0 creates it, and a second
    client that also thought there was none gets 409 instead of overwriting the first."""
    try:
        return study.decision
    except Decision.DoesNotExist:
        return Decision(study=study, label=None, version=0)


class StudyDetailSerializer(WorklistRowSerializer):
    series = SeriesSerializer(many=True, read_only=True)
    latest_analysis = serializers.SerializerMethodField(help_text="The newest run of any status, or null.")
    decision = serializers.SerializerMethodField(help_text="The clinician's decision, or null before there is one.")

    class Meta(WorklistRowSerializer.Meta):
        fields = WorklistRowSerializer.Meta.fields + ["series", "latest_analysis", "decision"]
        read_only_fields = fields

    def get_latest_analysis(self, study: Study) -> dict[str, Any] | None:
        run = study.analysis_runs.order_by("-created_at", "-pk").first()
        return None if run is None else AnalysisSummarySerializer(run).data

    def get_decision(self, study: Study) -> dict[str, Any] | None:
        decision = decision_or_placeholder(study)
        return None if decision.pk is None else DecisionSerializer(decision).data


class BoxSerializer(serializers.ModelSerializer):
    """A box in pixel indices of its instance. Validated against that instance (which must be in the study)."""

    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True, allow_null=True)
    updated_by = serializers.CharField(source="updated_by.username", default=None, read_only=True, allow_null=True)

    class Meta:
        model = Box
        fields = ["id", "study", "analysis_run", "sop_instance_uid", "x0", "y0", "x1", "y1", "patient_coords",
                  "label", "score", "provenance", "status", "version", "created_by", "updated_by", "updated_at"]
        read_only_fields = ["id", "study", "analysis_run", "patient_coords", "score", "provenance", "status",
                            "version", "created_by", "updated_by", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        box: Box | None = self.instance
        uid = attrs.get("sop_instance_uid", box.sop_instance_uid if box else None)
        if box is not None and uid != box.sop_instance_uid:
            raise serializers.ValidationError({"sop_instance_uid": "A box stays on its slice; draw a new one."})
        if box is not None and box.status == Box.Status.DELETED:
            raise serializers.ValidationError("This box was deleted and can no longer be edited.")
        study = self.context["study"]
        instance = Instance.objects.filter(sop_instance_uid=uid, series__study=study).first()
        if instance is None:
            raise serializers.ValidationError(
                {"sop_instance_uid": f"Instance {uid!r} is not part of study {study.pk}."})
        x0, y0, x1, y1 = (attrs.get(k, getattr(box, k, None)) for k in ("x0", "y0", "x1", "y1"))
        errors = {}
        if not 0 <= x0 <= x1 < instance.columns:
            errors["x0"] = errors["x1"] = f"Need 0 <= x0 <= x1 < {instance.columns} (columns); got x0={x0}, x1={x1}."
        if not 0 <= y0 <= y1 < instance.rows:
            errors["y0"] = errors["y1"] = f"Need 0 <= y0 <= y1 < {instance.rows} (rows); got y0={y0}, y1={y1}."
        if errors:
            raise serializers.ValidationError(errors)
        attrs["patient_coords"] = geometry.box_patient_corners(instance, x0, y0, x1, y1)
        return attrs


class StartReviewSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Study.Status.choices, read_only=True,
                                     help_text="The study's status afterwards (in_review unless it was further on).")


class MarkReviewedSerializer(serializers.Serializer):
    next_study_id = serializers.IntegerField(allow_null=True, read_only=True,
                                             help_text="The next not-reviewed study in the worklist order, or null.")
    decision = DecisionSerializer(read_only=True)


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = ["id", "study", "actor", "action", "object_type", "object_id", "before", "after", "created_at"]
        read_only_fields = fields


def render_box(box: Box) -> dict[str, Any]:
    """A box as the API shows it: the ``current`` object of a 409 on a stale box."""
    return BoxSerializer(box).data


def render_decision(decision: Decision) -> dict[str, Any]:
    """A decision as the API shows it: the ``current`` object of a 409 on a stale decision."""
    return DecisionSerializer(decision).data
