"""Review API: the worklist, study detail, boxes, the decision, mark-reviewed and the audit log.

Everyone signed in reads; annotators (and admins) edit boxes; clinicians (and admins) decide. Every edit of an
existing row is versioned (``concurrency``) and audited (``audit``) in one transaction.
"""
from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import generics, permissions, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from webapp.accounts.permissions import IsAdmin, IsAnnotator, IsClinician
from webapp.core import audit
from webapp.core.concurrency import ETagMixin, StaleVersion, ensure_current, etag, required_version, requested_version
from webapp.studies.models import Instance, Series, Study

from .filters import AuditEventFilter, BoxFilter, NullsLastOrdering, StudyFilter, WorklistSearch
from .models import AuditEvent, Box, Decision
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


def render_box(box: Box) -> dict[str, Any]:
    return BoxSerializer(box).data


class StudyBoxesView(ETagMixin, RoleWriteMixin, StudyScopedMixin, generics.ListCreateAPIView):
    """A study's boxes (deleted ones only when asked for by ``status``); POST draws a human box."""

    serializer_class = BoxSerializer
    write_permission = IsAnnotator
    queryset = Box.objects.select_related("created_by", "updated_by")
    filterset_class = BoxFilter
    filter_backends = [DjangoFilterBackend]

    def perform_create(self, serializer: BoxSerializer) -> None:
        user = self.request.user
        box = Box(study=self.get_study(), provenance=Box.Provenance.HUMAN, status=Box.Status.ACCEPTED,
                  created_by=user, updated_by=user, **serializer.validated_data)
        audit.audited_create(box, actor=user, action="box.create")
        serializer.instance = box


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

    def change(self, box: Box, changes: dict[str, Any], action: str) -> None:
        audit.audited_update(box, required_version(self.request), {**changes, "updated_by": self.request.user},
                             actor=self.request.user, action=action, render=render_box)


#: What a PATCH may change; patient_coords follow the geometry.
EDITABLE = ("x0", "y0", "x1", "y1", "label")


def edited_state(box: Box) -> dict[str, Any]:
    """Editing an AI box makes it the annotator's (ai_edited) and accepts it; human boxes stay human."""
    provenance = box.provenance if box.provenance == Box.Provenance.HUMAN else Box.Provenance.AI_EDITED
    return {"provenance": provenance, "status": Box.Status.ACCEPTED}


class BoxDetailView(BoxObjectMixin, generics.RetrieveUpdateDestroyAPIView):
    """PATCH moves/resizes/relabels (with ``version``); DELETE soft-deletes (``?version=N`` or If-Match)."""

    http_method_names = ["get", "patch", "delete", "head", "options"]

    def perform_update(self, serializer: BoxSerializer) -> None:
        box, data = serializer.instance, serializer.validated_data
        edits = {k: data[k] for k in EDITABLE if k in data and getattr(box, k) != data[k]}
        if not edits:  # nothing to save, but a stale client still learns about the newer version
            ensure_current(box, required_version(self.request), render_box)
            return
        self.change(box, {**edits, "patient_coords": data["patient_coords"], **edited_state(box)}, "box.update")

    def perform_destroy(self, box: Box) -> None:
        self.change(box, {"status": Box.Status.DELETED}, "box.delete")

    def destroy(self, request, *args, **kwargs):
        box = self.get_object()
        expected = required_version(request)
        ensure_current(box, expected, render_box)
        if box.status == Box.Status.DELETED:
            raise ValidationError({"detail": "This box is already deleted."})
        self.perform_destroy(box)
        return Response(status=status.HTTP_204_NO_CONTENT, headers={"ETag": etag(box.version)})


class BoxTransitionView(BoxObjectMixin, generics.GenericAPIView):
    """POST accept/reject with ``{version}``: the annotator's verdict on a box."""

    transition: str = ""

    def post(self, request, *args, **kwargs):
        box = self.get_object()
        ensure_current(box, required_version(request), render_box)
        if box.status == Box.Status.DELETED:
            raise ValidationError({"detail": "This box was deleted; it can no longer be accepted or rejected."})
        if self.transition == "accept":
            provenance = Box.Provenance.AI_ACCEPTED if box.provenance == Box.Provenance.AI else box.provenance
            changes = {"status": Box.Status.ACCEPTED, "provenance": provenance}
        else:
            changes = {"status": Box.Status.REJECTED}
        self.change(box, changes, f"box.{self.transition}")
        return Response(self.get_serializer(box).data)


def render_decision(decision: Decision) -> dict[str, Any]:
    return DecisionSerializer(decision).data


class DecisionView(ETagMixin, RoleWriteMixin, StudyScopedMixin, generics.GenericAPIView):
    """GET the study's decision (version 0 when none yet); PUT ``{label, comment, version}`` confirms or corrects.

    A change of label or comment re-opens the review: the sign-off (``reviewed``) covered the previous text.
    A PUT that changes nothing writes nothing (but a stale version still gets 409).
    """

    serializer_class = DecisionSerializer
    write_permission = IsClinician

    def get(self, request, *args, **kwargs):
        return Response(self.get_serializer(decision_or_placeholder(self.get_study())).data)

    @transaction.atomic  # the decision, its audit event and the study status move together
    def put(self, request, *args, **kwargs):
        study = self.get_study()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        decision = decision_or_placeholder(study)
        values = {**serializer.validated_data, "reviewed": False, "decided_by": request.user}
        if decision.pk is None and requested_version(request) in (None, 0):
            decision = self.create(study, values)
            code = status.HTTP_201_CREATED
        else:
            expected = required_version(request)  # an existing decision is changed only knowingly
            if any(getattr(decision, k) != v for k, v in serializer.validated_data.items()):
                audit.audited_update(decision, expected, values, actor=request.user, action="decision.update",
                                     render=render_decision)
            else:
                ensure_current(decision, expected, render_decision)
            code = status.HTTP_200_OK
        if not decision.reviewed:  # still signed off only when nothing changed
            set_status(study, Study.Status.IN_REVIEW)
        return Response(self.get_serializer(decision).data, status=code)

    def create(self, study: Study, values: dict[str, Any]) -> Decision:
        decision = Decision(study=study, **values)
        try:
            audit.audited_create(decision, actor=self.request.user, action="decision.create")
        except IntegrityError:  # another clinician created it between our read and our insert
            raise StaleVersion(render_decision(Decision.objects.get(study=study)), 0, "decision") from None
        return decision


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
        decision = decision_or_placeholder(study)
        if decision.pk is None:
            raise ValidationError({"detail": "Record a diagnosis before marking the study reviewed."})
        expected = requested_version(request)
        if expected is not None:
            ensure_current(decision, expected, render_decision)
        next_id = next_study_id(self.filter_queryset(self.get_queryset()), study.pk)
        if not decision.reviewed:
            audit.audited_update(decision, decision.version if expected is None else expected,
                                 {"reviewed": True, "decided_by": request.user}, actor=request.user,
                                 action="decision.review", render=render_decision)
        set_status(study, Study.Status.REVIEWED)
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
