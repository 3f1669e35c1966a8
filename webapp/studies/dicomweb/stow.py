"""STOW-RS (PS3.18 10.5): ``POST /dicomweb/studies[/{uid}]`` with ``multipart/related; type="application/dicom"``.

Parts are ingested one by one as they arrive (``IngestBatch``, the same rules as every other way in). The
answer is a DICOM JSON store response: ReferencedSOPSequence for instances stored or already present with the
same bytes, FailedSOPSequence with a Failure Reason code and the human-readable reason in Error Comment.
Status: 200 all stored, 202 some failed, 409 none stored, 400 malformed body or a body without parts (nothing
stored, PS3.18 10.5.3), 413 a first part past ``LUNGSCOPE_MAX_UPLOAD_BYTES``, 415 wrong media type.

Body length: with Content-Length, ``RequestSizeLimitMiddleware`` answers 413 before anything is read. A chunked body
(``Transfer-Encoding: chunked``, no Content-Length) is read only where the WSGI server de-chunks it and marks the
input terminated (``wsgi.input_terminated``: gunicorn, as deployed); bytes are counted as they come and reading stops
past the same limit: parts complete before it stay stored (202), the rest is reported as not read. Django's own
server (runserver) hands the application an empty body for a chunked request, so there it is refused with a 400
that says so.
"""
from __future__ import annotations

from typing import BinaryIO

from django.conf import settings
from django.urls import reverse
from django.utils.http import parse_header_parameters
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from ..ingest import IngestBatch, IngestResult
from . import dicomjson
from .multipart import MultipartError, iter_parts
from .qido import STUDIES, QidoView
from .wado import DICOM, RetrieveInstances


def store_response(batch: IngestBatch, request) -> dict:
    urls: dict[str, str] = {}  # by study: a body's instances mostly share one, and reverse() is not cheap

    def retrieve_url(result: IngestResult) -> str:
        uid = result.study_instance_uid
        if uid not in urls:
            urls[uid] = request.build_absolute_uri(reverse("wado-study", args=[uid]))
        return urls[uid]

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


CHUNKED_UNREADABLE = ("chunked request body (Transfer-Encoding: chunked, no Content-Length) not readable here: "
                      "this server passes such bodies on empty (Django's development server does); send "
                      "Content-Length, or use a server that de-chunks bodies (gunicorn, as deployed)")


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "request body too large"
    default_code = "payload_too_large"


class BodyLimitExceeded(Exception):
    """More bytes arrived than the upload limit allows; nothing past the limit was read."""


class CappedReader:
    """A body of unknown length (chunked), read through a counter: it delivers up to ``limit`` bytes, then raises
    BodyLimitExceeded when asked for more and more are coming (at most ``limit + 1`` bytes are taken from the
    server), so the parts that fit are parsed and stored before the refusal."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self.stream, self.limit, self.seen = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        allowed = self.limit - self.seen
        if allowed <= 0:
            if self.stream.read(1):
                raise BodyLimitExceeded(f"request body over the {self.limit}-byte limit")
            return b""
        data = self.stream.read(allowed if size is None or size < 0 else min(size, allowed))
        self.seen += len(data)
        return data


def request_body(request) -> BinaryIO:
    """The body to parse: Django's stream when Content-Length says how long it is; for a chunked body, the server's
    de-chunked input read through a ``CappedReader``, where the server terminates it."""
    meta = request.META
    limit = settings.LUNGSCOPE_MAX_UPLOAD_BYTES
    length = int(meta.get("CONTENT_LENGTH") or 0)
    if length > limit:  # RequestSizeLimitMiddleware answers 413 first; this keeps the view safe without it
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the {limit}-byte limit")
    if length:
        return request.stream
    if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
        if meta.get("wsgi.input_terminated") and meta.get("wsgi.input") is not None:
            return CappedReader(meta["wsgi.input"], limit)
        raise ParseError(CHUNKED_UNREADABLE)
    raise ParseError("empty request body")


class StreamedBody(BaseParser):
    """Accepts ``multipart/related`` without reading it: the view parses the body as a stream (``iter_parts``).

    DRF loads ``request.data`` whenever something asks for it; the session login's CSRF check does (it looks for a
    form token in ``request.POST``). Without a parser for the body's type that load answered 415, for every
    session request with a Content-Length (browsers, OHIF, curl), while token and chunked requests went through.
    """

    media_type = "multipart/related"

    def parse(self, stream, media_type=None, parser_context=None) -> dict:
        return {}


class StowMixin:
    """Adds STOW-RS ``POST`` to the resource that shares its URL (``/studies`` or ``/studies/{uid}``)."""

    parser_classes = [StreamedBody]

    def post(self, request, study: str | None = None):
        media_type, params = parse_header_parameters(request.content_type or "")
        if media_type.lower() != "multipart/related" or params.get("type", DICOM).lower() != DICOM:
            raise UnsupportedMediaType(request.content_type or "none",
                                       detail='send multipart/related; type="application/dicom"')
        if not params.get("boundary"):
            raise ParseError("the multipart Content-Type has no boundary")
        body = request_body(request)
        with IngestBatch(request.user, expected_study_uid=study) as batch:
            try:
                for number, part in enumerate(iter_parts(body, params["boundary"]), start=1):
                    if part.content_type not in (DICOM, ""):
                        part.body.file.close()
                        batch.reject(f"part {number}", f"part is {part.content_type}, not {DICOM}")
                    else:
                        batch.add_file(part.body, f"part {number}")
            except MultipartError as exc:
                if not batch.results:
                    raise ParseError(f"malformed multipart body: {exc}") from None
                batch.reject("body", f"malformed multipart body after the parts above: {exc}")
            except BodyLimitExceeded as exc:
                if not batch.results:
                    raise PayloadTooLarge(f"{exc}; nothing was stored") from None
                batch.reject("body", f"{exc}; the rest was not read")
        if not batch.results:
            raise ParseError("the multipart body holds no parts: nothing was stored")
        landed = sum(r.landed for r in batch.results)
        code = (status.HTTP_200_OK if landed == len(batch.results)
                else status.HTTP_409_CONFLICT if landed == 0 else status.HTTP_202_ACCEPTED)
        return Response(store_response(batch, request), status=code)


class StudiesResource(StowMixin, QidoView):
    """``/dicomweb/studies``: GET searches (QIDO-RS), POST stores (STOW-RS)."""

    level = STUDIES


class StudyResource(StowMixin, RetrieveInstances):
    """``/dicomweb/studies/{uid}``: GET retrieves the study (WADO-RS), POST stores into it (STOW-RS)."""
