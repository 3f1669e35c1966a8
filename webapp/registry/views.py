"""Registry API: model versions (list, promote, rollback, ROC figure) and the registry page."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.shortcuts import render
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.response import Response

from webapp.accounts.permissions import IsAdmin
from webapp.accounts.roles import ADMIN, has_role

from . import services
from .models import ModelVersion
from .serializers import ModelVersionSerializer


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


@login_required
def registry_page(request):
    """Model registry and training runs (admin page; the data comes from the API above)."""
    if not has_role(request.user, ADMIN):
        raise PermissionDenied("the model registry pages are for admins")
    return render(request, "registry/index.html")
