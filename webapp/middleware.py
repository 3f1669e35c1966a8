"""Request-level guards that run before any view reads the body."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class RequestSizeLimitMiddleware:
    """Refuse a request whose declared body exceeds LUNGSCOPE_MAX_UPLOAD_BYTES with 413, before it is read.

    Per-file limits in the ingest service catch a single oversized DICOM; this stops a multi-gigabyte request from
    being spooled to disk at all.
    """

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return JsonResponse({"detail": "Content-Length is not a number."}, status=400)
        limit = settings.LUNGSCOPE_MAX_UPLOAD_BYTES
        if length > limit:
            return JsonResponse({"detail": f"Request body of {length} bytes exceeds the {limit} byte limit."},
                                status=413)
        return self.get_response(request)
