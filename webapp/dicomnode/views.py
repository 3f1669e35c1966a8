"""The DICOM node API: peers and DICOMweb destinations (admins only), deliveries and per-study sent status
(any signed-in user), re-sending a reviewed study as a new SR version (clinicians and admins)."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from webapp.accounts.permissions import IsAdmin
from webapp.accounts.roles import ADMIN, CLINICIAN, has_role
from webapp.studies.models import Study

from .models import Delivery, DicomPeer, WebDestination
from .serializers import (DeliverySerializer, DicomPeerSerializer, ResendSerializer, SentStatusSerializer,
                          WebDestinationSerializer)
from .services import resend_review, study_sent_status


class DicomPeerViewSet(viewsets.ModelViewSet):
    queryset = DicomPeer.objects.all()
    serializer_class = DicomPeerSerializer
    permission_classes = [IsAdmin]


class WebDestinationViewSet(viewsets.ModelViewSet):
    queryset = WebDestination.objects.all()
    serializer_class = WebDestinationSerializer
    permission_classes = [IsAdmin]


class DeliveryList(generics.ListAPIView):
    serializer_class = DeliverySerializer
    permission_classes = [IsAuthenticated]
    filterset_fields = ["study", "run", "status", "sr_version"]
    queryset = Delivery.objects.all()


class StudySentStatus(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: SentStatusSerializer})
    def get(self, request, pk: int):
        study = get_object_or_404(Study, pk=pk)
        return Response({"study": study.pk, "sent_status": study_sent_status(study.pk)})


class ClinicianOrAdmin(BasePermission):
    message = "Only clinicians and admins re-send results."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and (has_role(user, CLINICIAN) or has_role(user, ADMIN)))


class StudyResend(APIView):
    permission_classes = [ClinicianOrAdmin]

    @extend_schema(request=None, responses={202: ResendSerializer})
    def post(self, request, pk: int):
        study = get_object_or_404(Study, pk=pk)
        if not hasattr(study, "decision"):
            raise ValidationError("the study has no clinician decision yet: there is nothing new to send")
        job = resend_review(study, request.user)
        if job is None:
            raise ValidationError("nothing to send: the study has no succeeded analysis or no destination is "
                                  "configured")
        return Response({"job": job.pk, "sr_version": job.params["sr_version"]}, status=status.HTTP_202_ACCEPTED)
