"""The ingest service's rules, file by file: what is stored, what is refused and why, and that nothing leaks."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pydicom
import pytest
from django.db import connection
from platform_helpers import assert_no_orphans, dicom_bytes, stored_files, variant
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array

from webapp.studies.ingest import IngestBatch, Outcome, ingest_file
from webapp.studies.models import Instance, Patient, Series, Study

pytestmark = pytest.mark.django_db


def test_phantom_series_is_stored_with_its_hierarchy(storage_dir, phantom_files):
    with IngestBatch() as batch:
        for path in phantom_files:
            batch.add_file(path.read_bytes(), path.name)
    assert batch.counts()["stored"] == len(phantom_files)
    series = Series.objects.get()
    assert series.modality == "CT" and series.study.patient.patient_id
    instance = series.instances.first()
    assert instance.file.name.startswith(f"dicom/{series.study.study_instance_uid}/{series.series_instance_uid}/")
    assert instance.rows == 64 and instance.image_orientation_patient == [1, 0, 0, 0, 1, 0]
    assert_no_orphans(storage_dir)


def test_same_bytes_twice_is_a_duplicate_and_different_bytes_a_conflict(storage_dir, phantom_files):
    data = phantom_files[0].read_bytes()
    assert ingest_file(data, "a.dcm").status == Outcome.STORED
    again = ingest_file(data, "a-again.dcm")
    assert again.status == Outcome.DUPLICATE and again.landed
    ds = pydicom.dcmread(phantom_files[0])
    ds.PatientName = "Changed^Name"
    conflict = ingest_file(dicom_bytes(ds), "a-changed.dcm")
    assert conflict.status == Outcome.CONFLICT and "different content" in conflict.reason
    assert Instance.objects.count() == 1 and Instance.objects.get().sha256 != ""
    assert_no_orphans(storage_dir)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda data: b"hello, not dicom" * 10, "not a DICOM file"),
        (lambda data: data[:300], "truncated"),
        (lambda data: data[:-2000], "truncated DICOM file"),
    ],
    ids=["not-dicom", "cut-in-header", "cut-in-pixels"],
)
def test_broken_files_are_rejected_with_a_reason(storage_dir, phantom_files, mutate, reason):
    result = ingest_file(mutate(phantom_files[0].read_bytes()), "broken.dcm")
    assert result.status == Outcome.REJECTED and reason in result.reason
    assert stored_files(storage_dir) == set() and not Instance.objects.exists()


def test_absurd_dimensions_are_refused_before_decoding(storage_dir, phantom_files):
    result = ingest_file(variant(phantom_files[0], Rows=65535, Columns=65535), "huge.dcm")
    assert result.status == Outcome.REJECTED and "implausible image size 65535 x 65535" in result.reason


def test_non_ct_and_missing_pixels_are_refused(storage_dir, phantom_files):
    mr = ingest_file(variant(phantom_files[0], Modality="MR", SOPClassUID="1.2.840.10008.5.1.4.1.1.4"), "mr.dcm")
    assert mr.status == Outcome.REJECTED and "not a CT image" in mr.reason
    ds = pydicom.dcmread(phantom_files[0])
    del ds.PixelData
    empty = ingest_file(dicom_bytes(ds), "no-pixels.dcm")
    assert empty.status == Outcome.REJECTED and empty.reason == "no pixel data"


def test_undecodable_compressed_pixels_are_refused(storage_dir, phantom_files):
    ds = pydicom.dcmread(phantom_files[0])
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 60])
    result = ingest_file(dicom_bytes(ds), "bad-j2k.dcm")
    assert result.status == Outcome.REJECTED and "pixel data cannot be decoded (JPEG 2000" in result.reason


def jpeg2000_frame(path) -> tuple[pydicom.Dataset, bytes]:
    """A phantom slice stored JPEG 2000 Lossless, and its codestream."""
    ds = pydicom.dcmread(path)
    ds.compress(pydicom.uid.JPEG2000Lossless)
    return ds, next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))


def with_codestream(ds: pydicom.Dataset, frame: bytes) -> bytes:
    ds.PixelData = encapsulate([frame])
    return dicom_bytes(ds)


def test_a_jpeg2000_codestream_is_stored_when_whole_and_refused_when_broken(storage_dir, phantom_files):
    """JPEG 2000 pixel data is checked for structure, not decoded, on ingest (decoding cost 24 ms an instance): a
    whole codestream is stored; one cut short, of another size than the header's, or missing a tile is refused
    (OpenJPEG decodes the last one without a word, as half an image)."""
    ds, frame = jpeg2000_frame(phantom_files[0])
    assert ingest_file(dicom_bytes(ds), "whole.dcm").status == Outcome.STORED
    tiles = bytearray(frame)
    tiles[24:28] = (ds.Columns // 2).to_bytes(4, "big")  # SIZ's tile width: two tiles, only the first one present
    cases = {"cut": (frame[: len(frame) * 2 // 3], "cut short"),
             "size": (frame, "an image of 64 x 64 where the header says 32 x 64"),
             "tile": (bytes(tiles), "1 of its 2 tiles missing")}
    for n, (name, (broken, reason)) in enumerate(cases.items(), start=1):
        other, _ = jpeg2000_frame(phantom_files[n])
        if name == "size":
            other.Rows = 32
        result = ingest_file(with_codestream(other, broken), f"{name}.dcm")
        assert result.status == Outcome.REJECTED, name
        assert result.reason.startswith("pixel data cannot be decoded (JPEG 2000") and reason in result.reason, \
            result.reason
    # Bytes after the end marker (padding) are no part of the codestream: stored.
    padded, _ = jpeg2000_frame(phantom_files[4])
    assert ingest_file(with_codestream(padded, frame + b"\xff\xff\xff\xff"), "padded.dcm").status == Outcome.STORED
    assert Instance.objects.count() == 2
    assert_no_orphans(storage_dir)


def test_a_lossless_jpeg_stream_is_stored_when_whole_and_refused_when_broken(storage_dir, phantom_files):
    """Lossless JPEG (process 14, SV1: the other common compressed CT syntax) is checked for structure too: a whole
    stream (libjpeg-turbo's, which pydicom's decoder reads back exactly) is stored, a stream cut short or of another
    size is refused."""
    import imagecodecs

    def lossless(path, rows: int | None = None) -> tuple[pydicom.Dataset, bytes]:
        ds = pydicom.dcmread(path)
        stream = imagecodecs.jpeg8_encode(ds.pixel_array, lossless=True, bitspersample=ds.BitsStored)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
        ds.Rows = rows or ds.Rows
        return ds, stream

    ds, stream = lossless(phantom_files[0])
    expected = pydicom.dcmread(phantom_files[0]).pixel_array
    assert ingest_file(with_codestream(ds, stream), "whole.dcm").status == Outcome.STORED
    with Instance.objects.get().file.open("rb") as fh:
        np.testing.assert_array_equal(pixel_array(pydicom.dcmread(fh)), expected)
    cut, stream = lossless(phantom_files[1])
    short = ingest_file(with_codestream(cut, stream[: len(stream) // 2]), "cut.dcm")
    other, stream = lossless(phantom_files[2], rows=32)
    smaller = ingest_file(with_codestream(other, stream), "size.dcm")
    for result, reason in ((short, "cut short"), (smaller, "an image of 64 x 64 where the header says 32 x 64")):
        assert result.status == Outcome.REJECTED and result.reason.startswith("pixel data cannot be decoded (JPEG "
                                                                              "Lossless") and reason in result.reason
    assert Instance.objects.count() == 1
    assert_no_orphans(storage_dir)


def test_real_jpeg2000_instances_pass_the_codestream_check_and_decode(storage_dir, shared_data):
    """Every LIDC-IDRI JPEG 2000 file passes the structure check; the stored files decode (the structure check
    does not let through what a decoder refuses, on these)."""
    from webapp.studies.checks import _check_pixels
    from webapp.studies.dicom_tags import IndexedAttributes

    files = sorted((shared_data / "real-ct" / "lidc-idri").rglob("*.dcm"))
    assert len(files) > 500
    for path in files:
        ds = pydicom.dcmread(path)
        _check_pixels(ds, IndexedAttributes.from_dataset(ds))
    for path in files[::60]:
        assert ingest_file(path.read_bytes(), path.name).status == Outcome.STORED
    for instance in Instance.objects.all():
        with instance.file.open("rb") as fh:
            assert pixel_array(pydicom.dcmread(fh)).shape == (512, 512)


def test_inconsistent_geometry_within_a_series_is_refused(storage_dir, phantom_files):
    assert ingest_file(phantom_files[0].read_bytes(), "first.dcm").status == Outcome.STORED
    ds = pydicom.dcmread(phantom_files[1])
    ds.Rows, ds.Columns = 32, 32
    ds.PixelData = np.zeros((32, 32), np.uint16).tobytes()
    smaller = ingest_file(dicom_bytes(ds), "smaller.dcm")
    assert smaller.status == Outcome.REJECTED and "differs from the series" in smaller.reason
    tilted = ingest_file(variant(phantom_files[2], ImageOrientationPatient=[0, 1, 0, 0, 0, -1]), "tilted.dcm")
    assert tilted.status == Outcome.REJECTED and "orientation" in tilted.reason
    assert_no_orphans(storage_dir)


def test_lungmask_slices_without_modality_are_stored_as_ct(storage_dir, shared_data):
    folder = shared_data / "real-ct" / "lungmask-two-slices"
    results = [ingest_file(p.read_bytes(), p.name) for p in sorted(folder.glob("*.dcm"))]
    assert [r.status for r in results] == [Outcome.STORED, Outcome.STORED]
    assert Series.objects.get().modality == "CT"


def test_jpeg2000_series_without_uids_lands_in_one_series_and_decodes(storage_dir, shared_data):
    files = sorted((shared_data / "real-ct" / "totalsegmentator-abdomen-j2k" / "example_ct_dicom").iterdir())
    with IngestBatch() as batch:
        for path in files:
            batch.add_file(path.read_bytes(), path.name)
    assert batch.counts()["stored"] == len(files) == 20
    series = Series.objects.get()  # blank Study/Series UIDs were derived, identically for every file
    assert series.instances.count() == 20 and Patient.objects.get().patient_id.startswith("ANON-")
    with series.instances.first().file.open("rb") as f:
        frame = pixel_array(pydicom.dcmread(f), index=0)
    assert frame.shape == (512, 512) and frame.std() > 0
    again = ingest_file(files[0].read_bytes(), files[0].name)
    assert again.status == Outcome.DUPLICATE


def test_no_orphans_after_a_batch_with_failures(storage_dir, shared_data, phantom_files):
    variants = [p for p in sorted((shared_data / "dicom-variants").rglob("*")) if p.is_file()]
    with IngestBatch() as batch:
        for path in variants + phantom_files:
            batch.add_file(path.read_bytes(), path.name)
    counts = batch.counts()
    assert counts["stored"] > 10 and counts["rejected"] > 30 and counts["conflict"] >= 1
    assert all(r.reason for r in batch.results if not r.landed)
    assert_no_orphans(storage_dir)


@pytest.mark.django_db(transaction=True)
def test_concurrent_ingest_of_one_study_does_not_trip_unique_constraints(storage_dir, phantom_files):
    """Several requests delivering the same series at once (and overlapping) all succeed or deduplicate."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrent writers need PostgreSQL (SQLite locks whole tables)")
    payloads = [(p.read_bytes(), p.name) for p in phantom_files] * 3
    start = threading.Barrier(4)

    def deliver(chunk):
        start.wait()
        try:
            return [ingest_file(data, name).status for data, name in chunk]
        finally:
            connection.close()

    with ThreadPoolExecutor(4) as pool:
        outcomes = [s for part in pool.map(deliver, [payloads[i::4] for i in range(4)]) for s in part]
    assert outcomes.count(Outcome.STORED) == len(phantom_files)
    assert outcomes.count(Outcome.DUPLICATE) == 2 * len(phantom_files)
    assert Study.objects.count() == 1 and Patient.objects.count() == 1 and Series.objects.count() == 1
    assert_no_orphans(storage_dir)


def test_a_landed_study_is_queued_for_analysis_once_per_batch(settings, storage_dir, phantom_files,
                                                              django_capture_on_commit_callbacks):
    from webapp.jobs.models import Job

    settings.LUNGSCOPE_ANALYZE_ON_INGEST = True
    with django_capture_on_commit_callbacks(execute=True), IngestBatch() as batch:
        for path in phantom_files:
            batch.add_file(path.read_bytes(), path.name)
    assert Job.objects.filter(kind=Job.Kind.ANALYZE).count() == 1
    with django_capture_on_commit_callbacks(execute=True), IngestBatch() as batch:
        batch.add_file(phantom_files[0].read_bytes(), "again.dcm")  # a duplicate adds nothing to analyse
    assert Job.objects.filter(kind=Job.Kind.ANALYZE).count() == 1


def test_a_flush_that_cannot_commit_leaves_no_file_and_no_result_that_says_stored(storage_dir, phantom_files,
                                                                                monkeypatch):
    """A DIMSE listener answers each instance from its result: after a failed commit it must not read "stored"."""
    from django.db import OperationalError

    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    batch = IngestBatch()
    result = batch.add_file(phantom_files[0].read_bytes(), "a.dcm")
    monkeypatch.setattr(Instance.objects, "bulk_create", database_gone)
    with pytest.raises(OperationalError):
        batch.flush()
    assert (result.status, result.landed) == (Outcome.REJECTED, False)
    assert "OperationalError" in result.reason
    assert stored_files(storage_dir) == set() and not Instance.objects.exists()
