"""REST endpoints of the analysis app: start an analysis, read runs, fetch one slice's map as a PNG."""
from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from webapp.accounts.permissions import IsClinician
from webapp.studies.models import Study

from . import services
from .maps import MAP_KINDS
from .models import AnalysisRun, Finding, SliceResult
from .serializers import (
    AnalysisRunDetailSerializer,
    AnalysisRunSerializer,
    AnalyzeRequestSerializer,
    AnalyzeResponseSerializer,
)
from .tasks import enqueue_analysis


class Gone(APIException):
    status_code = status.HTTP_410_GONE
    default_detail = "This resource can no longer be produced."
    default_code = "gone"


def get_study(pk: int) -> Study:
    study = Study.objects.filter(pk=pk).first()
    if study is None:
        raise NotFound(f"There is no study with id {pk}.")
    return study


def runs_with_detail() -> QuerySet[AnalysisRun]:
    """Runs with what the detail serializer reads, in a fixed number of queries."""
    return AnalysisRun.objects.select_related("series").prefetch_related(
        "slices", Prefetch("findings", queryset=Finding.objects.select_related("slice"))
    )


class StudyAnalyzeView(generics.GenericAPIView):
    """Queue an AI analysis of the study (with the active model, or the registered version given)."""

    permission_classes = [IsClinician]
    serializer_class = AnalyzeRequestSerializer

    @extend_schema(request=AnalyzeRequestSerializer, responses={202: AnalyzeResponseSerializer})
    def post(self, request: Request, pk: int) -> Response:
        study = get_study(pk)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if not services.has_ct_images(study):
            raise ValidationError({"study": "The study has no CT images to analyse."})
        job = enqueue_analysis(study, user=request.user, model_version=serializer.validated_data.get("model_version"))
        body = AnalyzeResponseSerializer({"job": job, "analysis_run": job.params["analysis_run_id"]}).data
        return Response(body, status=status.HTTP_202_ACCEPTED)


class StudyLatestAnalysisView(generics.RetrieveAPIView):
    """The study's most recent succeeded run, with slices and findings: what the viewer and the worklist show.

    A newer run still queued, running or failed does not hide the results there are; all runs, whatever their
    status, are at ``analyses/``.
    """

    serializer_class = AnalysisRunDetailSerializer

    def get_object(self) -> AnalysisRun:
        study = get_study(self.kwargs["pk"])
        run = runs_with_detail().filter(study=study, status=AnalysisRun.Status.SUCCEEDED).first()
        if run is None:
            newest = AnalysisRun.objects.filter(study=study).first()
            state = (f"its analysis run {newest.pk} is {newest.status}" if newest
                     else f"POST /api/studies/{study.pk}/analyze/ to start an analysis")
            raise NotFound(f"Study {study.pk} has no finished analysis yet; {state}.")
        return run


class StudyAnalysesView(generics.ListAPIView):
    """Every run of the study, newest first, each labelled with the model version that produced it."""

    serializer_class = AnalysisRunSerializer
    filter_backends: list = []

    def get_queryset(self) -> QuerySet[AnalysisRun]:
        study = get_study(self.kwargs["pk"])
        return AnalysisRun.objects.filter(study=study).select_related("series")


class AnalysisRunDetailView(generics.RetrieveAPIView):
    serializer_class = AnalysisRunDetailSerializer
    queryset = runs_with_detail()


class JSONErrorsNegotiation(BaseContentNegotiation):
    """The map view answers PNG itself; only its errors go through a renderer, always JSON (an <img> sends */*)."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class SliceMapView(generics.GenericAPIView):
    """One map of one slice as a PNG at the slice's size; computed and stored on the first request (the opacity
    labels of any lung slice without running the model)."""

    queryset = AnalysisRun.objects.all()
    content_negotiation_class = JSONErrorsNegotiation

    @extend_schema(
        operation_id="analysis_runs_slice_map",
        parameters=[OpenApiParameter("kind", str, OpenApiParameter.PATH, enum=list(MAP_KINDS)),
                    OpenApiParameter("index", int, OpenApiParameter.PATH, description="Slice index in the run.")],
        responses={(200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description=(
            "Grayscale PNG scaled to 0..255 by the map's own maximum, which the X-Map-Max header gives; for kind "
            "opacity an RGBA PNG of the labels (ground-glass amber, consolidation red, the rest transparent), "
            "X-Map-Max the largest label.")),
            404: OpenApiResponse(description="Unknown run, slice or map kind, or a run without results."),
            410: OpenApiResponse(description="The model that produced the run is gone; maps cannot be computed.")},
    )
    def get(self, request: Request, pk: int, index: int, kind: str) -> HttpResponse:
        run = self.get_object()
        if kind not in MAP_KINDS:
            raise NotFound(f"Unknown map kind {kind!r}; expected one of {', '.join(MAP_KINDS)}.")
        if run.status != AnalysisRun.Status.SUCCEEDED:
            raise NotFound(f"Analysis run {run.pk} is {run.status}; only a succeeded run has maps.")
        slice_result = SliceResult.objects.filter(run=run, index=index).first()
        if slice_result is None:
            raise NotFound(f"Analysis run {run.pk} has no slice {index}.")
        try:
            png, peak = services.map_png(slice_result, kind)
        except services.MapsUnavailable as exc:
            raise Gone(str(exc)) from exc
        response = HttpResponse(png, content_type="image/png")
        response["X-Map-Max"] = f"{peak:.6g}"
        response["Cache-Control"] = "private, max-age=86400"  # a run's maps never change
        return response
