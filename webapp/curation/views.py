"""Admin-only API for dataset versions and exports, and the curation admin page."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from webapp.accounts.permissions import IsAdmin
from webapp.accounts.roles import ADMIN, has_role
from webapp.jobs.models import Job

from .exports import create_export
from .models import DatasetVersion, Export
from .serializers import (DatasetVersionCreateSerializer, DatasetVersionDetailSerializer, DatasetVersionSerializer,
                          ExportSerializer)
from .services import SelectionError, create_dataset_version


class DatasetVersionListCreate(generics.ListCreateAPIView):
    """``GET`` the versions; ``POST`` a selection to freeze a new one (201, or 400 when nothing matches)."""

    permission_classes = [IsAdmin]
    queryset = DatasetVersion.objects.select_related("created_by")
    filterset_fields = ["fingerprint"]
    ordering_fields = ["created_at"]

    def get_serializer_class(self):
        return DatasetVersionCreateSerializer if self.request.method == "POST" else DatasetVersionSerializer

    @extend_schema(request=DatasetVersionCreateSerializer, responses={201: DatasetVersionDetailSerializer})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        serializer = DatasetVersionCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            version = create_dataset_version(serializer.criteria(), name=serializer.validated_data["name"],
                                             description=serializer.validated_data["description"], user=request.user)
        except SelectionError as exc:
            raise ValidationError({"criteria": str(exc)}) from exc
        return Response(DatasetVersionDetailSerializer(version).data, status=status.HTTP_201_CREATED)


class DatasetVersionDetail(generics.RetrieveAPIView):
    permission_classes = [IsAdmin]
    queryset = DatasetVersion.objects.select_related("created_by").prefetch_related("items")
    serializer_class = DatasetVersionDetailSerializer


class ExportListCreate(generics.ListCreateAPIView):
    """``POST {dataset_version, format, deidentify}`` queues the export and answers 202 with its job."""

    permission_classes = [IsAdmin]
    queryset = Export.objects.select_related("job", "created_by")
    serializer_class = ExportSerializer
    filterset_fields = ["dataset_version", "format"]

    @extend_schema(responses={202: ExportSerializer})
    def post(self, request, *args, **kwargs):
        return super().post(request, *args, **kwargs)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        export = create_export(data["dataset_version"], data["format"], data.get("deidentify", True), request.user)
        return Response(self.get_serializer(export).data, status=status.HTTP_202_ACCEPTED)


class ExportDetail(generics.RetrieveAPIView):
    permission_classes = [IsAdmin]
    queryset = Export.objects.select_related("job", "created_by")
    serializer_class = ExportSerializer


class ExportDownload(generics.GenericAPIView):
    """The finished zip, streamed from storage; 409 while the job is still running or when it failed."""

    permission_classes = [IsAdmin]
    queryset = Export.objects.select_related("job")

    @extend_schema(responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def get(self, request, *args, **kwargs):
        export: Export = self.get_object()
        if not export.file or export.job is None or export.job.status != Job.Status.SUCCEEDED:
            state = export.job.status if export.job else "unknown"
            return Response({"detail": f"export {export.pk} is not ready (job {state})"},
                            status=status.HTTP_409_CONFLICT)
        return FileResponse(export.file.open("rb"), as_attachment=True, filename=export.download_name,
                            content_type="application/zip")


@login_required
def curation_page(request):
    """Dataset versions and exports (admin page; the data comes from the API above)."""
    if not has_role(request.user, ADMIN):
        raise PermissionDenied("the curation pages are for admins")
    return render(request, "curation/index.html")
