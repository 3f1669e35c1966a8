"""API shapes for training runs and batch re-analysis."""
from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from webapp.curation.models import DatasetVersion
from webapp.curation.serializers import JobSummarySerializer
from webapp.registry.models import ModelVersion, TrainingRun


def tasks() -> dict[str, tuple[str, ...]]:
    """``training.datasets.TASKS`` (task -> classes), imported on first use: ``training`` imports torch, which the web
    process should not pay for when it loads the URL conf."""
    from training.datasets import TASKS

    return TASKS


class TrainingConfigSerializer(serializers.Serializer):
    # task: a ChoiceField over tasks(), added by get_fields (when the serializer is used, not when it is declared)
    iterations = serializers.IntegerField(min_value=1, max_value=200_000)
    seed = serializers.IntegerField(min_value=0, default=0)
    start_bundle = serializers.PrimaryKeyRelatedField(queryset=ModelVersion.objects.all(), allow_null=True,
                                                      default=None)
    width = serializers.FloatField(min_value=0.05, max_value=2.0, default=1.0)
    batch_size = serializers.IntegerField(min_value=1, max_value=512, default=16)
    max_slices = serializers.IntegerField(min_value=1, allow_null=True, default=None)
    input_size = serializers.IntegerField(min_value=32, max_value=512, default=224)  # from scratch only
    device = serializers.ChoiceField(choices=["auto", "cpu", "cuda"], default="auto")
    # outside_lungs_mm, from scratch only (a start bundle brings its own): blank each slice beyond this many mm of
    # its lungs (crop.outside_lungs_mm); added by get_fields with the bound the bundle loader checks

    def get_fields(self):
        from inference.preprocess import OUTSIDE_LUNGS_MM_MAX  # torch, as tasks(): on first use

        reach = serializers.FloatField(min_value=0.0, max_value=OUTSIDE_LUNGS_MM_MAX, allow_null=True, default=None)
        return {"task": serializers.ChoiceField(choices=sorted(tasks())), **super().get_fields(),
                "outside_lungs_mm": reach}

    def validate_outside_lungs_mm(self, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise serializers.ValidationError("a distance in mm above 0 (leave it out to keep the whole crop)")
        return value

    def validate(self, attrs):
        start = attrs["start_bundle"]
        classes = list(tasks()[attrs["task"]])
        if start is not None and list(start.classes) != classes:
            raise serializers.ValidationError(
                {"start_bundle": f"version {start.pk} predicts {start.classes}; task {attrs['task']} needs {classes}"})
        return attrs


class TrainingRunSerializer(serializers.ModelSerializer):
    job = JobSummarySerializer(read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None, allow_null=True)
    progress_url = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = ["id", "dataset_version", "config", "status", "iteration", "total_iterations", "last_metrics",
                  "model_version", "error", "job", "progress_url", "created_by", "created_at", "started_at",
                  "finished_at"]
        read_only_fields = fields

    def get_progress_url(self, run: TrainingRun) -> str:
        return reverse("training-run-progress", args=[run.pk])


class TrainingRunCreateSerializer(serializers.Serializer):
    dataset_version = serializers.PrimaryKeyRelatedField(queryset=DatasetVersion.objects.all())
    config = TrainingConfigSerializer()

    def stored_config(self) -> dict:
        """The validated config as stored on the run (JSON: the start bundle by id)."""
        data = dict(self.validated_data["config"])
        data["start_bundle"] = data["start_bundle"].pk if data["start_bundle"] else None
        return data


class ReanalysisSerializer(serializers.Serializer):
    study_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=5000)


class ReanalysisJobSerializer(serializers.Serializer):
    study = serializers.IntegerField()
    job = serializers.IntegerField()


class ReanalysisResponseSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(allow_null=True, help_text="The active version the jobs will use.")
    jobs = ReanalysisJobSerializer(many=True)


class TrainingProgressSerializer(serializers.Serializer):
    """What the live chart polls: the logged records (``iter, stage, loss, val_loss, val_acc, lr, time_s, eta_s``)."""

    id = serializers.IntegerField()
    status = serializers.CharField()
    iteration = serializers.IntegerField()
    total_iterations = serializers.IntegerField()
    eta_s = serializers.FloatField(allow_null=True)
    last = serializers.DictField()
    points = serializers.ListField(child=serializers.DictField())
    job = serializers.DictField()
