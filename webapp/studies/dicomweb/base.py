"""What every DICOMweb view shares: DRF authentication (session or token), DICOM JSON for bodies and errors."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import ParseError
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

    def initial(self, request, *args, **kwargs):
        """Refuse a UID or query value holding a NUL character with a 400 before any view code runs: no DICOM
        value has one, and PostgreSQL rejects it in a query (a 500 on every retrieval and search before)."""
        super().initial(request, *args, **kwargs)
        values = [*kwargs.values(), *(v for _, listed in request.query_params.lists() for v in listed)]
        if any("\x00" in str(value) for value in values):
            raise ParseError("a UID or query parameter contains a NUL character")
