"""STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies[/{uid}]`` with ``multipart/related; type="application/dicom"``.

Parts are ingested one by one as they arrive (``IngestBatch``, the same rules as every other way in). The
answer is a DICOM JSON store response: ReferencedSOPSequence for instances stored or already present with the
same bytes, FailedSOPSequence with a Failure Reason code and the human-readable reason in Error Comment.
Status: 200 all stored, 202 some failed, 409 none stored, 400 malformed body, 415 wrong media type.
"""
from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from django.utils.http import parse_header_parameters
from rest_framework import status
from rest_framework.exceptions import ParseError, UnsupportedMediaType, ValidationError
from rest_framework.response import Response

from ..ingest import IngestBatch, IngestResult
from . import dicomjson
from .multipart import MultipartError, iter_parts
from .qido import STUDIES, QidoView
from .wado import DICOM, RetrieveInstances


def store_response(batch: IngestBatch, request) -> dict:
    def retrieve_url(result: IngestResult) -> str:
        return request.build_absolute_uri(reverse("wado-study", args=[result.study_instance_uid]))

    referenced = [dicomjson.dataset({"ReferencedSOPClassUID": r.sop_class_uid,
                                     "ReferencedSOPInstanceUID": r.sop_instance_uid,
                                     "RetrieveURL": retrieve_url(r)})
                  for r in batch.results if r.landed]
    failed = [dicomjson.dataset({"ReferencedSOPClassUID": r.sop_class_uid,
                                 "ReferencedSOPInstanceUID": r.sop_instance_uid,
                                 "FailureReason": int(r.failure) if r.failure is not None else 0x0110,
                                 "ErrorComment": f"{r.name}: {r.reason}"[:64]})
                for r in batch.results if not r.landed]
    studies = {r.study_instance_uid for r in batch.results if r.landed}
    body = {}
    if len(studies) == 1:
        body["RetrieveURL"] = retrieve_url(next(r for r in batch.results if r.landed))
    if referenced:
        body["ReferencedSOPSequence"] = referenced
    if failed:
        body["FailedSOPSequence"] = failed
    return dicomjson.dataset(body)


class StowMixin:
    """Adds STOW-RS ``POST`` to the resource that shares its URL (``/studies`` or ``/studies/{uid}``)."""

    parser_classes: list = []  # the body is read as a stream by ``iter_parts``

    def post(self, request, study: str | None = None):
        media_type, params = parse_header_parameters(request.content_type or "")
        if media_type.lower() != "multipart/related" or params.get("type", DICOM).lower() != DICOM:
            raise UnsupportedMediaType(request.content_type or "none",
                                       detail='send multipart/related; type="application/dicom"')
        if not params.get("boundary"):
            raise ParseError("the multipart Content-Type has no boundary")
        if int(request.META.get("CONTENT_LENGTH") or 0) > settings.LUNGSCOPE_MAX_UPLOAD_BYTES:
            raise ValidationError(f"request body larger than {settings.LUNGSCOPE_MAX_UPLOAD_BYTES} bytes")
        if request.stream is None:
            raise ParseError("empty request body")
        with IngestBatch(request.user, expected_study_uid=study) as batch:
            try:
                for number, part in enumerate(iter_parts(request.stream, params["boundary"]), start=1):
                    if part.content_type not in (DICOM, ""):
                        part.body.file.close()
                        batch.reject(f"part {number}", f"part is {part.content_type}, not {DICOM}")
                    else:
                        batch.add_file(part.body, f"part {number}")
            except MultipartError as exc:
                if not batch.results:
                    raise ParseError(f"malformed multipart body: {exc}") from None
                batch.reject("body", f"malformed multipart body after the parts above: {exc}")
        landed = sum(r.landed for r in batch.results)
        code = (status.HTTP_200_OK if landed == len(batch.results)
                else status.HTTP_409_CONFLICT if landed == 0 else status.HTTP_202_ACCEPTED)
        return Response(store_response(batch, request), status=code)


class StudiesResource(StowMixin, QidoView):
    """``/dicomweb/studies``: GET searches (QIDO-RS), POST stores (STOW-RS)."""

    level = STUDIES


class StudyResource(StowMixin, RetrieveInstances):
    """``/dicomweb/studies/{uid}``: GET retrieves the study (WADO-RS), POST stores into it (STOW-RS)."""
