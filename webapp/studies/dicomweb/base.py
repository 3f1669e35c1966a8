"""What every DICOMweb view shares: DRF authentication (session or token), DICOM JSON for bodies and errors."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView


class DicomJSONRenderer(JSONRenderer):
    media_type = "application/dicom+json"
    format = "dicomjson"


@extend_schema(exclude=True)  # specified by DICOM PS3.18, not by the OpenAPI document of the REST API
class DicomWebView(APIView):
    """Base view. Retrieval resources negotiate their multipart part type themselves (``multipart.part_type``),
    so DRF's renderer negotiation is bypassed: JSON bodies and error details are always DICOM JSON."""

    renderer_classes = [DicomJSONRenderer]

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)
