"""Ingest: one file in, stored whole or rejected with a reason.

Every way in (``POST /api/uploads/``, STOW-RS, ``import_dicom``, ``import_images``, the ingest job) hands files
to an ``IngestBatch``. A file first passes the checks in ``checks.py`` (from the header out, cheapest first), then
must agree with the series already stored (hierarchy, rows x columns, orientation). The bytes are then written to
the storage backend and the rows created atomically; if that fails the file is deleted again, so storage files and
``Instance`` rows always match. Re-sending the same bytes for a SOP Instance UID is an idempotent "duplicate";
different bytes for a known UID are a "conflict" and never overwrite what is stored.

Callers must not wrap ingest in their own transaction: a rollback of an outer block would leave the file behind.
"""
from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from . import archives
from .checks import FailureReason, Rejected, check_dataset, read_dataset
from .dicom_tags import IndexedAttributes
from .models import Instance, Patient, Series, Study

logger = logging.getLogger(__name__)

SPOOL_IN_MEMORY_BYTES = 16 * 1024 * 1024
ORIENTATION_TOLERANCE = 1e-4  # direction cosines written by different tools differ in the last digits


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    CONFLICT = "conflict"


@dataclass
class IngestResult:
    """The fate of one file, as the upload API and STOW-RS report it."""

    name: str
    status: Outcome
    reason: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    sop_class_uid: str = ""
    failure: FailureReason | None = None
    study_id: int | None = field(default=None, repr=False)

    @property
    def landed(self) -> bool:
        """Stored now or already stored with the same bytes: the data is in the archive either way."""
        return self.status in (Outcome.STORED, Outcome.DUPLICATE)


@dataclass
class Spooled:
    """A received file on local disk or in memory, seekable, with its digest."""

    file: BinaryIO
    sha256: str
    size: int


def spool(source: BinaryIO | bytes) -> Spooled:
    """Copy ``source`` into a seekable temporary file while hashing it (zip members and sockets cannot seek)."""
    if isinstance(source, bytes | bytearray):
        source = io.BytesIO(source)
    limit = settings.LUNGSCOPE_MAX_UPLOAD_BYTES
    digest, size = hashlib.sha256(), 0
    target = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)
    while chunk := source.read(1024 * 1024):
        size += len(chunk)
        if size > limit:
            target.close()
            raise Rejected(f"file is larger than the {limit} byte limit", FailureReason.OUT_OF_RESOURCES)
        digest.update(chunk)
        target.write(chunk)
    target.seek(0)
    return Spooled(target, digest.hexdigest(), size)


def storage_path(attrs: IndexedAttributes) -> str:
    return f"dicom/{attrs.study_instance_uid}/{attrs.series_instance_uid}/{attrs.sop_instance_uid}.dcm"


@dataclass(frozen=True)
class KnownSeries:
    """A series whose hierarchy and reference geometry were looked up (under its row lock) and found consistent.

    A batch remembers it, so the next files of the series skip the get_or_create round trips and the lock: the
    geometry of a stored series never changes, because every instance added to it must match.
    """

    patient_id: str
    study_instance_uid: str
    study_pk: int
    series_pk: int
    rows: int
    columns: int
    orientation: list[float] | None

    def check(self, attrs: IndexedAttributes) -> None:
        if attrs.study_instance_uid != self.study_instance_uid:
            raise Rejected(f"series {attrs.series_instance_uid} is already stored under another study",
                           FailureReason.DATASET_DOES_NOT_MATCH)
        if attrs.patient_id != self.patient_id:
            raise Rejected(f"study {attrs.study_instance_uid} is already stored for another patient",
                           FailureReason.DATASET_DOES_NOT_MATCH)
        if (self.rows, self.columns) != (attrs.rows, attrs.columns):
            raise Rejected(f"{attrs.rows} x {attrs.columns} pixels differs from the series' "
                           f"{self.rows} x {self.columns}", FailureReason.DATASET_DOES_NOT_MATCH)
        stored, new = self.orientation, attrs.image_orientation_patient
        if stored and new and any(abs(a - b) > ORIENTATION_TOLERANCE for a, b in zip(stored, new, strict=True)):
            raise Rejected(f"image orientation {new} differs from the series' {stored}",
                           FailureReason.DATASET_DOES_NOT_MATCH)


def _existing_outcome(name: str, attrs: IndexedAttributes, sha256: str) -> IngestResult | None:
    """Duplicate or conflict when the SOP Instance UID is already stored; None when it is new."""
    existing = (Instance.objects.filter(sop_instance_uid=attrs.sop_instance_uid)
                .values("sha256", "series__study_id").first())
    if existing is None:
        return None
    common = dict(name=name, sop_instance_uid=attrs.sop_instance_uid, study_instance_uid=attrs.study_instance_uid,
                  sop_class_uid=attrs.sop_class_uid, study_id=existing["series__study_id"])
    if existing["sha256"] == sha256:
        return IngestResult(status=Outcome.DUPLICATE, reason="already stored with identical bytes", **common)
    return IngestResult(status=Outcome.CONFLICT, failure=FailureReason.DUPLICATE_SOP_INSTANCE,
                        reason="this SOP Instance UID is already stored with different content", **common)


def _look_up_series(attrs: IndexedAttributes, source_label: str) -> KnownSeries:
    """Create or reuse Patient, Study and Series, lock the series row and read its reference geometry.

    get_or_create retries a lost unique race in a savepoint, so concurrent deliveries of one study cannot crash;
    the row lock serialises the first instances of a new series, so two files of different sizes cannot both
    become its reference.
    """
    patient, _ = Patient.objects.get_or_create(
        patient_id=attrs.patient_id,
        defaults=dict(name=attrs.patient_name, birth_date=attrs.patient_birth_date, sex=attrs.patient_sex),
    )
    study, _ = Study.objects.get_or_create(
        study_instance_uid=attrs.study_instance_uid,
        defaults=dict(patient=patient, study_date=attrs.study_date, study_time=attrs.study_time,
                      study_description=attrs.study_description, accession_number=attrs.accession_number,
                      referring_physician=attrs.referring_physician, study_id=attrs.study_id,
                      source_label=source_label),
    )
    series, _ = Series.objects.get_or_create(
        series_instance_uid=attrs.series_instance_uid,
        defaults=dict(study=study, modality=attrs.modality, series_number=attrs.series_number,
                      series_description=attrs.series_description, body_part_examined=attrs.body_part_examined,
                      frame_of_reference_uid=attrs.frame_of_reference_uid),
    )
    series = Series.objects.select_for_update().select_related("study__patient").get(pk=series.pk)
    reference = series.instances.only("rows", "columns", "image_orientation_patient").first()
    study.save(update_fields=["updated_at"])  # the worklist orders by recent activity
    return KnownSeries(
        patient_id=series.study.patient.patient_id, study_instance_uid=series.study.study_instance_uid,
        study_pk=series.study_id, series_pk=series.pk,
        rows=reference.rows if reference else attrs.rows, columns=reference.columns if reference else attrs.columns,
        orientation=reference.image_orientation_patient if reference else attrs.image_orientation_patient,
    )


def _save_rows(attrs: IndexedAttributes, path: str, spooled: Spooled, user, source_label: str,
               known: KnownSeries | None) -> KnownSeries:
    """The rows for one file. A series seen before in this batch needs a single INSERT, atomic on its own; a new
    one needs the hierarchy looked up and the row lock, in one transaction with the INSERT."""
    if known is not None:
        known.check(attrs)
        _create_instance(attrs, known, path, spooled, user)
        return known
    with transaction.atomic():
        known = _look_up_series(attrs, source_label)
        known.check(attrs)
        _create_instance(attrs, known, path, spooled, user)
    return known


def _create_instance(attrs: IndexedAttributes, known: KnownSeries, path: str, spooled: Spooled, user) -> None:
    Instance.objects.create(
        sop_instance_uid=attrs.sop_instance_uid, sop_class_uid=attrs.sop_class_uid, series_id=known.series_pk,
        instance_number=attrs.instance_number, image_position_patient=attrs.image_position_patient,
        image_orientation_patient=attrs.image_orientation_patient, pixel_spacing=attrs.pixel_spacing,
        slice_thickness=attrs.slice_thickness, slice_location=attrs.slice_location, rows=attrs.rows,
        columns=attrs.columns, number_of_frames=attrs.number_of_frames, transfer_syntax_uid=attrs.transfer_syntax_uid,
        file=path, size=spooled.size, sha256=spooled.sha256, uploaded_by=user,
    )


def ingest_file(source: BinaryIO | bytes | Spooled, name: str, *, user=None, allow_secondary_capture: bool = False,
                source_label: str = "", expected_study_uid: str | None = None,
                known_series: dict[str, KnownSeries] | None = None) -> IngestResult:
    """Store one file or say why not. Never raises for bad input; database and storage errors propagate.

    ``known_series`` is a batch's memory of series it has already stored into (see ``KnownSeries``).
    """
    attrs: IndexedAttributes | None = None
    try:
        spooled = source if isinstance(source, Spooled) else spool(source)
        try:
            ds = read_dataset(spooled.file)
            attrs = IndexedAttributes.from_dataset(ds)
            check_dataset(ds, attrs, allow_secondary_capture=allow_secondary_capture)
            del ds
            if expected_study_uid and attrs.study_instance_uid != expected_study_uid:
                raise Rejected(f"Study Instance UID {attrs.study_instance_uid} does not match the target study "
                               f"{expected_study_uid}", FailureReason.DATASET_DOES_NOT_MATCH)
            return (_existing_outcome(name, attrs, spooled.sha256)
                    or _store(name, attrs, spooled, user, source_label, known_series))
        finally:
            spooled.file.close()
    except Rejected as rejection:
        return IngestResult(
            name=name, status=Outcome.REJECTED, reason=rejection.reason, failure=rejection.failure,
            sop_instance_uid=attrs.sop_instance_uid if attrs else rejection.identifier("SOPInstanceUID"),
            study_instance_uid=attrs.study_instance_uid if attrs else rejection.identifier("StudyInstanceUID"),
            sop_class_uid=attrs.sop_class_uid if attrs else rejection.identifier("SOPClassUID"),
        )


def _store(name: str, attrs: IndexedAttributes, spooled: Spooled, user, source_label: str,
           known_series: dict[str, KnownSeries] | None) -> IngestResult:
    known_series = {} if known_series is None else known_series
    spooled.file.seek(0)
    path = default_storage.save(storage_path(attrs), File(spooled.file, name=f"{attrs.sop_instance_uid}.dcm"))
    try:
        known = _save_rows(attrs, path, spooled, user, source_label, known_series.get(attrs.series_instance_uid))
    except IntegrityError:
        default_storage.delete(path)
        # Another request stored this SOP instance between our check and our insert: judge against its bytes.
        outcome = _existing_outcome(name, attrs, spooled.sha256)
        if outcome is None:
            raise
        return outcome
    except BaseException:
        default_storage.delete(path)
        raise
    known_series[attrs.series_instance_uid] = known
    return IngestResult(name=name, status=Outcome.STORED, sop_instance_uid=attrs.sop_instance_uid,
                        study_instance_uid=attrs.study_instance_uid, sop_class_uid=attrs.sop_class_uid,
                        study_id=known.study_pk)


class IngestBatch:
    """One delivery of files (an upload, a STOW body, an import run, an ingest job).

    Collects the per-file results and, when it is closed, queues AI analysis once for every study that received
    new instances (not once per file), after the rows are committed.
    """

    def __init__(self, user=None, *, allow_secondary_capture: bool = False, source_label: str = "",
                 expected_study_uid: str | None = None) -> None:
        self.user = user if user is not None and getattr(user, "is_authenticated", False) else None
        self.options = dict(allow_secondary_capture=allow_secondary_capture, source_label=source_label,
                            expected_study_uid=expected_study_uid)
        self.results: list[IngestResult] = []
        self.known_series: dict[str, KnownSeries] = {}

    def __enter__(self) -> IngestBatch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add_file(self, source: BinaryIO | bytes, name: str) -> IngestResult:
        result = ingest_file(source, name, user=self.user, known_series=self.known_series, **self.options)
        self.results.append(result)
        return result

    def reject(self, name: str, reason: str) -> IngestResult:
        """Record a file refused before it could be read (archive entry, unreadable path)."""
        result = IngestResult(name=name, status=Outcome.REJECTED, reason=reason,
                              failure=FailureReason.CANNOT_UNDERSTAND)
        self.results.append(result)
        return result

    def add_archive(self, file: BinaryIO, name: str, progress: Callable[[int, int], None] | None = None) -> None:
        """Ingest every member of a zip archive; a refused archive or member becomes a rejected result."""
        try:
            with archives.open_zip(file) as archive:
                total = len(archive.entries)
                for done, entry in enumerate(archive.entries, start=1):
                    label = f"{name}/{entry.name}"
                    if entry.refusal:
                        self.reject(label, entry.refusal)
                    else:
                        try:  # inflate and CRC errors surface while the member is spooled, before any write
                            self.add_file(archive.read(entry), label)
                        except archives.ArchiveError as exc:
                            self.reject(label, str(exc))
                    if progress:
                        progress(done, total)
        except archives.ArchiveError as exc:
            self.reject(name, str(exc))

    def counts(self) -> dict[str, int]:
        counted = Counter(result.status.value for result in self.results)
        return {outcome.value: counted.get(outcome.value, 0) for outcome in Outcome}

    def close(self) -> None:
        """Queue analysis for the studies that gained instances in this batch."""
        new_studies = {r.study_id for r in self.results if r.status == Outcome.STORED}
        if new_studies and settings.LUNGSCOPE_ANALYZE_ON_INGEST:
            for study in Study.objects.filter(pk__in=new_studies):
                transaction.on_commit(lambda study=study: _enqueue_analysis(study))


def _enqueue_analysis(study: Study) -> None:
    """Hand a new study to the analysis app when it is installed (it is developed alongside this one).

    The files are stored whatever happens here: a broker outage must not turn a successful upload into an error,
    so a failure is logged and the study stays "new", to be analysed on request.
    """
    try:
        from webapp.analysis.tasks import enqueue_analysis
    except ModuleNotFoundError as exc:
        if exc.name != "webapp.analysis.tasks":
            raise
        logger.info("analysis app not available; study %s not queued for analysis", study.study_instance_uid)
        return
    try:
        enqueue_analysis(study)
    except Exception:
        logger.exception("could not queue analysis of study %s", study.study_instance_uid)
