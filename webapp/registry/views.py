"""Registry API: model versions (list, promote, rollback, ROC figure), training runs, batch re-analysis."""
from __future__ import annotations


from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from webapp.accounts.permissions import IsAdmin
from webapp.accounts.roles import ADMIN, has_role
from webapp.analysis.tasks import enqueue_analysis
from webapp.studies.models import Study

from . import services
from .models import ModelVersion, TrainingRun
from .serializers import (ModelVersionSerializer, ReanalysisResponseSerializer, ReanalysisSerializer,
                          TrainingProgressSerializer, TrainingRunCreateSerializer, TrainingRunSerializer)
from .training import create_training_run, read_progress, request_cancel


class ModelVersionList(generics.ListAPIView):
    """Every version, newest first, with held-out figures beside the active version's on the same studies."""

    serializer_class = ModelVersionSerializer
    queryset = ModelVersion.objects.select_related("created_by", "training_run")
    filterset_fields = ["is_active", "name", "source"]


class ModelVersionDetail(generics.RetrieveAPIView):
    serializer_class = ModelVersionSerializer
    queryset = ModelVersion.objects.select_related("created_by", "training_run")


class ModelVersionRoc(generics.GenericAPIView):
    """The ROC figure the training run drew (PNG)."""

    queryset = ModelVersion.objects.all()

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request, *args, **kwargs):
        version: ModelVersion = self.get_object()
        if not version.roc_plot or not default_storage.exists(version.roc_plot):
            raise Http404("this version has no ROC figure")
        return FileResponse(default_storage.open(version.roc_plot, "rb"), content_type="image/png")


class ModelVersionPromote(generics.GenericAPIView):
    """Make this version the one new analyses use (audited as model.promote)."""

    permission_classes = [IsAdmin]
    queryset = ModelVersion.objects.all()
    serializer_class = ModelVersionSerializer

    @extend_schema(request=None)
    def post(self, request, *args, **kwargs):
        version = self.get_object()
        services.promote(version, request.user)
        version.refresh_from_db()
        return Response(self.get_serializer(version).data)


class ModelVersionRollback(generics.GenericAPIView):
    """Re-activate the version that was active before the current one (audited as model.rollback); 409 when
    there is none."""

    permission_classes = [IsAdmin]
    serializer_class = ModelVersionSerializer

    @extend_schema(request=None)
    def post(self, request, *args, **kwargs):
        services.ensure_default_model_version()
        try:
            activation = services.rollback(request.user)
        except services.RollbackError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        return Response(ModelVersionSerializer(activation.model_version, context={"request": request}).data)


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


@login_required
def registry_page(request):
    """Model registry and training runs (admin page; the data comes from the API above)."""
    if not has_role(request.user, ADMIN):
        raise PermissionDenied("the model registry pages are for admins")
    return render(request, "registry/index.html")
