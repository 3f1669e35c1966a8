"""Review API: the worklist, study detail, boxes, the decision, mark-reviewed and the audit log.

Everyone signed in reads; annotators (and admins) edit boxes; clinicians (and admins) decide. The views parse the
request and render the result; the rules (box states, the decision's create-or-update, the sign-off) are in
``services``.
"""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import generics, permissions, status
from rest_framework.response import Response

from webapp.accounts.permissions import IsAdmin, IsAnnotator, IsClinician
from webapp.core.concurrency import ETagMixin, etag, required_version, requested_version
from webapp.studies.models import Instance, Series, Study

from . import services
from .filters import AuditEventFilter, BoxFilter, NullsLastOrdering, StudyFilter, WorklistSearch
from .models import AuditEvent, Box
from .pagination import KeysFirstPagination
from .serializers import (AuditEventSerializer, BoxSerializer, DecisionSerializer, MarkReviewedSerializer,
                          StartReviewSerializer, StudyDetailSerializer, WorklistRowSerializer, decision_or_placeholder)
from .worklist import OPENABLE, next_study_id, set_status, worklist_queryset


class RoleWriteMixin:
    """Reads for anyone signed in; unsafe methods need ``write_permission`` (whose message names the role)."""

    write_permission: type[permissions.BasePermission] = IsAdmin

    def get_permissions(self):
        if self.request.method in permissions.SAFE_METHODS:
            return [permissions.IsAuthenticated()]
        return [self.write_permission()]


class WorklistMixin:
    """Filtering, search and ordering of the worklist, shared by the list and by mark-reviewed's "next study"."""

    filter_backends = [DjangoFilterBackend, WorklistSearch, NullsLastOrdering]
    filterset_class = StudyFilter
    search_fields = ["patient__patient_id", "patient__name", "accession_number"]
    ordering_fields = ["updated_at", "study_date", "ai_probability", "ai_uncertainty", "opacity_percent",
                       "infection_percent"]
    ordering_leaders = {"-ai_uncertainty": ("-ai_outside",), "ai_uncertainty": ("ai_outside",)}
    ordering = ["-study_date"]

    def get_queryset(self):
        return worklist_queryset()


class WorklistView(WorklistMixin, generics.ListAPIView):
    serializer_class = WorklistRowSerializer
    pagination_class = KeysFirstPagination


class StudyDetailView(generics.RetrieveAPIView):
    serializer_class = StudyDetailSerializer

    def get_queryset(self):
        instances = Instance.objects.only("pk", "series_id", "sop_instance_uid", "instance_number", "rows", "columns",
                                          "image_position_patient", "image_orientation_patient", "slice_location")
        return worklist_queryset().prefetch_related(
            Prefetch("series", queryset=Series.objects.prefetch_related(Prefetch("instances", queryset=instances))))


class StudyScopedMixin:
    """Views under ``/api/studies/{study_pk}/``: the study is loaded once, an unknown one is a 404, and the view's
    ``queryset`` is narrowed to it. (The schema generator calls these without URL arguments.)"""

    def get_study(self) -> Study:
        if not hasattr(self, "_study"):
            self._study = get_object_or_404(Study, pk=self.kwargs["study_pk"])
        return self._study

    def get_queryset(self):
        queryset = super().get_queryset()
        return queryset.none() if getattr(self, "swagger_fake_view", False) else queryset.filter(study=self.get_study())

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        return {**context, "study": self.get_study()} if "study_pk" in self.kwargs else context


class StudyBoxesView(ETagMixin, RoleWriteMixin, StudyScopedMixin, generics.ListCreateAPIView):
    """A study's boxes (deleted ones only when asked for by ``status``); POST draws a human box."""

    serializer_class = BoxSerializer
    write_permission = IsAnnotator
    queryset = Box.objects.select_related("created_by", "updated_by")
    filterset_class = BoxFilter
    filter_backends = [DjangoFilterBackend]

    def perform_create(self, serializer: BoxSerializer) -> None:
        serializer.instance = services.create_box(self.get_study(), serializer.validated_data, self.request.user)


class BoxObjectMixin(ETagMixin, RoleWriteMixin):
    serializer_class = BoxSerializer
    write_permission = IsAnnotator
    queryset = Box.objects.select_related("study", "created_by", "updated_by")

    def get_object(self) -> Box:
        if not hasattr(self, "_box"):  # once per request: the serializer context needs it too
            self._box = super().get_object()
        return self._box

    def get_serializer_context(self) -> dict[str, Any]:
        context = super().get_serializer_context()
        if "pk" in self.kwargs:  # absent when the schema generator asks for the serializer
            context["study"] = self.get_object().study
        return context


class BoxDetailView(BoxObjectMixin, generics.RetrieveUpdateDestroyAPIView):
    """PATCH moves/resizes/relabels (with ``version``); DELETE soft-deletes (``?version=N`` or If-Match)."""

    http_method_names = ["get", "patch", "delete", "head", "options"]

    def perform_update(self, serializer: BoxSerializer) -> None:
        services.edit_box(serializer.instance, required_version(self.request), serializer.validated_data,
                          self.request.user)

    def destroy(self, request, *args, **kwargs):
        box = self.get_object()
        services.delete_box(box, required_version(request), request.user)
        return Response(status=status.HTTP_204_NO_CONTENT, headers={"ETag": etag(box.version)})


class BoxTransitionView(BoxObjectMixin, generics.GenericAPIView):
    """POST accept/reject with ``{version}``: the annotator's verdict on a box."""

    transition: str = ""

    def post(self, request, *args, **kwargs):
        box = self.get_object()
        services.transition_box(box, required_version(request), self.transition, request.user)
        return Response(self.get_serializer(box).data)


class DecisionView(ETagMixin, RoleWriteMixin, StudyScopedMixin, generics.GenericAPIView):
    """GET the study's decision (version 0 when none yet); PUT ``{label, comment, version}`` confirms or corrects.

    A change of label or comment re-opens the review: the sign-off (``reviewed``) covered the previous text.
    A PUT that changes nothing writes nothing (but a stale version still gets 409).
    """

    serializer_class = DecisionSerializer
    write_permission = IsClinician

    def get(self, request, *args, **kwargs):
        return Response(self.get_serializer(decision_or_placeholder(self.get_study())).data)

    def put(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        decision, created = services.save_decision(self.get_study(), serializer.validated_data, request.user,
                                                   requested_version(request))
        return Response(self.get_serializer(decision).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class StartReviewView(StudyScopedMixin, generics.GenericAPIView):
    """A clinician begins the review: a new or AI-done study moves to "in review"; any other status stays.

    Its own POST, called by the viewer when the clinician starts deciding, so that reading a study (a GET, a
    prefetch, an annotator or a curious look) never changes what the worklist says about it.
    """

    permission_classes = [IsClinician]
    serializer_class = StartReviewSerializer

    def post(self, request, *args, **kwargs):
        study = self.get_study()
        set_status(study, Study.Status.IN_REVIEW, only_from=OPENABLE)
        return Response(self.get_serializer(study).data)


class MarkReviewedView(WorklistMixin, StudyScopedMixin, generics.GenericAPIView):
    """Sign the decision off and hand back the next not-reviewed study in the caller's worklist order.

    Takes the worklist's query parameters (filters, search, ordering) so "next" follows the list on screen.
    ``version`` is optional here: without it the sign-off applies to the decision as it is now.
    """

    permission_classes = [IsClinician]
    serializer_class = MarkReviewedSerializer

    @transaction.atomic
    def post(self, request, *args, **kwargs):
        study = self.get_study()
        expected = requested_version(request)
        decision = services.decision_to_sign_off(study, expected)
        next_id = next_study_id(self.filter_queryset(self.get_queryset()), study.pk)
        services.sign_off(study, decision, expected, request.user)
        return Response(self.get_serializer({"next_study_id": next_id, "decision": decision}).data)


class StudyAuditView(StudyScopedMixin, generics.ListAPIView):
    serializer_class = AuditEventSerializer
    queryset = AuditEvent.objects.select_related("actor")


class AuditLogView(generics.ListAPIView):
    """The whole audit log, for admins, filterable by study, actor, action, object and time range."""

    serializer_class = AuditEventSerializer
    permission_classes = [IsAdmin]
    queryset = AuditEvent.objects.select_related("actor")
    filter_backends = [DjangoFilterBackend]
    filterset_class = AuditEventFilter
