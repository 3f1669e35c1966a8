"""WADO-RS (PS3.18 10.4) and WADO-URI (PS3.18 9) retrieval of stored instances.

* study / series / instance: ``multipart/related; type="application/dicom"``, the stored files byte for byte,
  streamed from the storage backend;
* ``/metadata``: DICOM JSON read from the file headers (pixel data replaced by a BulkDataURI pointing at the
  frames resource), with the identifying attributes the index derived (blank UIDs, missing Modality) filled in
  so a viewer sees the same UIDs that QIDO-RS returned;
* ``/frames/{n[,m...]}``: ``multipart/related; type="application/octet-stream"``, each frame raw and
  uncompressed in Explicit VR Little Endian byte order, decoded first when the file is compressed, which is
  what Cornerstone's DICOM image loader accepts whatever the stored transfer syntax;
* ``GET /wado?requestType=WADO&studyUID=..&seriesUID=..&objectUID=..`` answers with the file
  (``contentType=application/dicom``, also assumed when absent; rendered images are not offered).

Users who do not see patient identity (annotators) get files and metadata with it emptied (``identity.py``).
"""
from __future__ import annotations

import errno
import warnings
from collections.abc import Iterable

import pydicom
from django.core.files.storage import default_storage
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian
from rest_framework.exceptions import NotAcceptable, NotFound, ParseError
from rest_framework.response import Response

from ..dicom_tags import IndexedAttributes
from ..models import Instance
from .base import DicomWebView
from ..identity import masked_file, masked_json, sees_patient_identity
from .multipart import Part, file_chunks, multipart_response, part_type

DICOM = "application/dicom"
OCTET_STREAM = "application/octet-stream"


def instances_in_scope(study: str, series: str | None = None, instance: str | None = None) -> QuerySet[Instance]:
    """The stored instances a WADO-RS URL names, in series then spatial-index order; 404 when there are none."""
    instances = Instance.objects.filter(series__study__study_instance_uid=study).select_related("series__study")
    if series:
        instances = instances.filter(series__series_instance_uid=series)
    if instance:
        instances = instances.filter(sop_instance_uid=instance)
    instances = instances.order_by("series__series_number", "series__pk", "instance_number", "pk")
    if not instances.exists():
        raise NotFound("no such study, series or instance")
    return instances


def instance_path(instance: Instance) -> str:
    series = instance.series
    return reverse("wado-instance", args=[series.study.study_instance_uid, series.series_instance_uid,
                                          instance.sop_instance_uid])


def file_content(instance: Instance, user) -> Iterable[bytes]:
    """The stored bytes, streamed; for users who do not see patient identity, a copy without it."""
    file = default_storage.open(instance.file.name, "rb")
    return file_chunks(file) if sees_patient_identity(user) else [masked_file(file)]


class RetrieveInstances(DicomWebView):
    """``GET`` a study, series or instance as DICOM Part 10 files."""

    def get(self, request, study: str, series: str | None = None, instance: str | None = None):
        part_type(request.headers.get("Accept", ""), (DICOM,))
        instances = list(instances_in_scope(study, series, instance))
        # Checked before the first byte goes out: once streaming, a missing file could only cut the body short.
        if missing := next((i for i in instances if not default_storage.exists(i.file.name)), None):
            raise FileNotFoundError(errno.ENOENT, "stored file missing", missing.file.name)
        parts = (Part(DICOM, file_content(i, request.user), location=request.build_absolute_uri(instance_path(i)))
                 for i in instances)
        return multipart_response(parts, DICOM)


def instance_metadata(instance: Instance, request) -> dict:
    """One instance's header as DICOM JSON, pixel data by reference."""
    with default_storage.open(instance.file.name, "rb") as file, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(file, stop_before_pixels=True)
    for keyword, value in IndexedAttributes.from_dataset(ds).identifying_overrides().items():
        setattr(ds, keyword, value)
    metadata = ds.to_json_dict(bulk_data_threshold=64 * 1024, suppress_invalid_tags=True)
    frames = ",".join(str(n) for n in range(1, instance.number_of_frames + 1))
    metadata["7FE00010"] = {
        "vr": "OB" if pydicom.uid.UID(instance.transfer_syntax_uid).is_compressed else "OW",
        "BulkDataURI": request.build_absolute_uri(f"{instance_path(instance)}/frames/{frames}"),
    }
    return metadata if sees_patient_identity(request.user) else masked_json(metadata)


class RetrieveMetadata(DicomWebView):
    def get(self, request, study: str, series: str | None = None, instance: str | None = None):
        return Response([instance_metadata(i, request) for i in instances_in_scope(study, series, instance)])


def frame_bytes(ds: pydicom.Dataset, index: int) -> bytes:
    """Frame ``index`` (0-based) as raw little-endian pixels: sliced when stored that way, decoded otherwise."""
    syntax = ds.file_meta.TransferSyntaxUID
    bits = int(ds.BitsAllocated)
    if "PixelData" in ds and not syntax.is_compressed and syntax.is_little_endian and bits % 8 == 0:
        length = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
        return ds.PixelData[index * length:(index + 1) * length]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = pixel_array(ds, index=index)
    return frame.astype(frame.dtype.newbyteorder("<"), copy=False).tobytes()


def parse_frame_list(frames: str, count: int) -> list[int]:
    try:
        numbers = [int(n) for n in frames.split(",") if n.strip()]
    except ValueError:
        raise ParseError("frame list must be comma-separated frame numbers") from None
    if not numbers or any(n < 1 or n > count for n in numbers):
        raise NotFound(f"frames are numbered 1 to {count}")
    return numbers


class RetrieveFrames(DicomWebView):
    def get(self, request, study: str, series: str, instance: str, frames: str):
        part_type(request.headers.get("Accept", ""), (OCTET_STREAM,))
        stored = instances_in_scope(study, series, instance).get()
        numbers = parse_frame_list(frames, stored.number_of_frames)
        with default_storage.open(stored.file.name, "rb") as file:
            ds = pydicom.dcmread(file)
        content_type = f"{OCTET_STREAM}; transfer-syntax={ExplicitVRLittleEndian}"
        location = request.build_absolute_uri(instance_path(stored))
        parts = [Part(content_type, [frame_bytes(ds, n - 1)], location=f"{location}/frames/{n}") for n in numbers]
        return multipart_response(parts, OCTET_STREAM)


class WadoUri(DicomWebView):
    def get(self, request):
        params = request.query_params
        if params.get("requestType") != "WADO":
            raise ParseError("requestType=WADO is required")
        if params.get("contentType", DICOM) != DICOM:
            raise NotAcceptable("only contentType=application/dicom is served")
        missing = [p for p in ("studyUID", "seriesUID", "objectUID") if not params.get(p)]
        if missing:
            raise ParseError(f"missing parameter(s): {', '.join(missing)}")
        stored = get_object_or_404(Instance, sop_instance_uid=params["objectUID"],
                                   series__series_instance_uid=params["seriesUID"],
                                   series__study__study_instance_uid=params["studyUID"])
        return StreamingHttpResponse(file_content(stored, request.user), content_type=DICOM, headers={
            "Content-Disposition": f'attachment; filename="{stored.sop_instance_uid}.dcm"'})
