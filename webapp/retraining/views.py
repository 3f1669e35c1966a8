"""Retraining API: training runs (queue, detail, progress, cancel) and batch re-analysis."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from webapp.accounts.permissions import IsAdmin
from webapp.analysis.tasks import enqueue_analysis
from webapp.registry import services
from webapp.registry.models import ModelVersion, TrainingRun
from webapp.studies.models import Study

from .serializers import (ReanalysisResponseSerializer, ReanalysisSerializer, TrainingProgressSerializer,
                          TrainingRunCreateSerializer, TrainingRunSerializer)
from .training import create_training_run, read_progress, request_cancel


class Reanalysis(generics.GenericAPIView):
    """``{study_ids}``: analyse each study again with the active version; 202 with one job per study."""

    permission_classes = [IsAdmin]
    serializer_class = ReanalysisSerializer

    @extend_schema(responses={202: ReanalysisResponseSerializer})
    def post(self, request, *args, **kwargs):
        serializer = ReanalysisSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = sorted(set(serializer.validated_data["study_ids"]))
        studies = list(Study.objects.filter(pk__in=ids))
        missing = sorted(set(ids) - {s.pk for s in studies})
        if missing:
            raise ValidationError({"study_ids": f"no such studies: {missing[:20]}"})
        services.ensure_default_model_version()
        active = ModelVersion.objects.filter(is_active=True).first()
        jobs = [enqueue_analysis(study, user=request.user) for study in studies]
        return Response({"model_version": active.pk if active else None,
                         "jobs": [{"study": s.pk, "job": j.pk} for s, j in zip(studies, jobs)]},
                        status=status.HTTP_202_ACCEPTED)


class TrainingRunListCreate(generics.ListCreateAPIView):
    """``POST {dataset_version, config: {task, iterations, seed, start_bundle}}`` queues a run: 202 with its job."""

    permission_classes = [IsAdmin]
    queryset = TrainingRun.objects.select_related("job", "created_by")
    filterset_fields = ["status", "dataset_version"]

    def get_serializer_class(self):
        return TrainingRunCreateSerializer if self.request.method == "POST" else TrainingRunSerializer

    @extend_schema(responses={202: TrainingRunSerializer})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        serializer = TrainingRunCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        run = create_training_run(serializer.validated_data["dataset_version"], serializer.stored_config(), request.user)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetail(generics.RetrieveAPIView):
    permission_classes = [IsAdmin]
    queryset = TrainingRun.objects.select_related("job", "created_by")
    serializer_class = TrainingRunSerializer


class TrainingRunProgress(generics.GenericAPIView):
    """The logged records (``?after=<iteration>`` for only the new ones), the latest one and an ETA."""

    permission_classes = [IsAdmin]
    queryset = TrainingRun.objects.select_related("job")
    serializer_class = TrainingProgressSerializer

    @extend_schema(parameters=[OpenApiParameter("after", int, description="only records after this iteration")])
    def get(self, request, *args, **kwargs):
        try:
            after = int(request.query_params.get("after", 0))
        except ValueError as exc:
            raise ValidationError({"after": "an iteration number"}) from exc
        return Response(read_progress(self.get_object(), after))


class TrainingRunCancel(generics.GenericAPIView):
    """Stop the run: immediately when still queued, else at the worker's next iteration. 409 when it has ended."""

    permission_classes = [IsAdmin]
    queryset = TrainingRun.objects.select_related("job")
    serializer_class = TrainingRunSerializer

    @extend_schema(request=None, responses={202: TrainingRunSerializer})
    def post(self, request, *args, **kwargs):
        run: TrainingRun = self.get_object()
        if run.status not in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
            return Response({"detail": f"training run {run.pk} has already ended ({run.status})"},
                            status=status.HTTP_409_CONFLICT)
        run = request_cancel(run)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
