"""``POST /api/uploads/``: files from the browser (single files, a whole folder, or zip archives).

Plain files are ingested during the request: a folder of a few hundred slices takes seconds and the user gets
per-file results at once. A zip may hold thousands of files, so it is saved to storage under ``uploads/`` and
handed to an ingest job on the ``default`` queue; the response carries the job, which the client polls at
``/api/jobs/{id}/``. Status: 202 when a job was queued, 201 when something new was stored, 200 when everything
was already there, 400 when nothing landed.
"""
from __future__ import annotations

import uuid

from django.core.files.storage import default_storage
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from webapp.jobs.models import Job

from . import archives
from .ingest import IngestBatch, Outcome
from .serializers import UploadRequestSerializer, UploadResponseSerializer
from .tasks import ingest_upload


def queue_archive(upload, user) -> Job:
    """Park an uploaded zip in storage and queue the job that ingests it (after the job row is committed)."""
    path = default_storage.save(f"uploads/{uuid.uuid4().hex}.zip", upload)  # the user's name is only a label
    job = Job.objects.create(kind=Job.Kind.INGEST, params={"upload": path, "name": upload.name},
                             created_by=user, message="queued")
    transaction.on_commit(lambda: ingest_upload.delay(job.pk))
    return job


class UploadView(generics.GenericAPIView):
    parser_classes = [MultiPartParser]
    serializer_class = UploadRequestSerializer

    @extend_schema(responses={200: UploadResponseSerializer, 201: UploadResponseSerializer,
                              202: UploadResponseSerializer,
                              400: OpenApiResponse(OpenApiTypes.OBJECT, description=(
                                  "nothing landed: ``results`` (as for 201) says why for each file; or the form is "
                                  "invalid (no ``files``): the errors by field"))})
    def post(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        jobs: list[Job] = []
        with IngestBatch(request.user) as batch:
            for upload in serializer.validated_data["files"]:
                if archives.is_zip(upload):
                    jobs.append(queue_archive(upload, request.user))
                else:
                    batch.add_file(upload, upload.name)
        body = UploadResponseSerializer({"results": batch.results, "jobs": jobs}).data
        return Response(body, status=self.status_for(batch, jobs))

    @staticmethod
    def status_for(batch: IngestBatch, jobs: list[Job]) -> int:
        if jobs:
            return status.HTTP_202_ACCEPTED
        if any(r.status == Outcome.STORED for r in batch.results):
            return status.HTTP_201_CREATED
        if any(r.landed for r in batch.results):
            return status.HTTP_200_OK
        return status.HTTP_400_BAD_REQUEST
