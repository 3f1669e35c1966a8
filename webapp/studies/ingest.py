"""Ingest: one file in, stored whole or rejected with a reason.

Every way in (``POST /api/uploads/``, STOW-RS, ``import_dicom``, ``import_images``, the ingest job) hands files
to an ``IngestBatch``. A file first passes the checks in ``checks.py`` (from the header out, cheapest first), then
must agree with the series already stored (hierarchy, rows x columns, orientation). The bytes are then written to
the storage backend, and the rows of a batch's files are inserted together in one transaction (``FLUSH_EVERY``
files at a time); files whose rows do not commit are deleted again, so storage files and ``Instance`` rows match.
Re-sending the same bytes for a SOP Instance UID is an idempotent "duplicate"; different bytes for a known UID
are a "conflict" and never overwrite what is stored.

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
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from webapp.storage import save_new

from . import archives
from .checks import FailureReason, Rejected, check_dataset, read_dataset
from .dicom_tags import IndexedAttributes
from .models import Instance, Patient, Series, Study
from .signals import instances_received

logger = logging.getLogger(__name__)

SPOOL_IN_MEMORY_BYTES = 16 * 1024 * 1024
READ_BYTES = 1024 * 1024  # a source is read in pieces of this size
ORIENTATION_TOLERANCE = 1e-4  # direction cosines written by different tools differ in the last digits
FLUSH_EVERY = 64  # files whose rows are inserted together, in one transaction
FLUSH_ATTEMPTS = 3  # a flush that lost a unique race to a concurrent delivery judges its files again


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


class Spool:
    """Collects a file arriving in pieces, hashing as it goes: in memory as one bytes object up to
    ``SPOOL_IN_MEMORY_BYTES`` (one copy of each byte, which pydicom and the storage write then read without copying
    again), in a temporary file past that; more than ``limit`` bytes is a rejection."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.digest, self.size = hashlib.sha256(), 0
        self.pieces: list[bytes] = []
        self.overflow: BinaryIO | None = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise Rejected(f"file is larger than the {self.limit} byte limit", FailureReason.OUT_OF_RESOURCES)
        self.digest.update(data)
        if self.overflow is None and self.size > SPOOL_IN_MEMORY_BYTES:
            self.overflow = tempfile.TemporaryFile()
            self.overflow.writelines(self.pieces)
            self.pieces = []
        if self.overflow is None:
            self.pieces.append(data)
        else:
            self.overflow.write(data)

    def finish(self) -> Spooled:
        file = self.overflow or io.BytesIO(b"".join(self.pieces))  # one piece: joined without a copy
        file.seek(0)
        return Spooled(file, self.digest.hexdigest(), self.size)

    def discard(self) -> None:
        """Drop what was collected (a broken or refused file)."""
        self.pieces = []
        if self.overflow is not None:
            self.overflow.close()


def spool(source: BinaryIO | bytes) -> Spooled:
    """Hash ``source`` into a seekable file (zip members and sockets cannot seek); bytes are used as they are."""
    target = Spool(settings.LUNGSCOPE_MAX_UPLOAD_BYTES)
    try:
        if isinstance(source, bytes | bytearray):
            target.write(bytes(source))
        else:
            while chunk := source.read(READ_BYTES):
                target.write(chunk)
    except BaseException:  # over the limit, or the source broke (a zip member's CRC): no temporary file stays
        target.discard()
        raise
    return target.finish()


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


def _hierarchy(attrs: IndexedAttributes, source_label: str) -> tuple[Study, Series]:
    """Create or reuse the file's Patient, Study and Series rows.

    get_or_create retries a lost unique race in a savepoint, so concurrent deliveries of one study cannot crash.
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
    return study, series


def _lock_series(series_pk: int, attrs: IndexedAttributes) -> KnownSeries:
    """Lock the series row and read its reference geometry (``attrs``' own for a series without instances yet).

    The lock, held until the batch's rows commit, serialises the first instances of a new series, so two files of
    different sizes cannot both become its reference.
    """
    series = Series.objects.select_for_update().select_related("study__patient").get(pk=series_pk)
    reference = series.instances.only("rows", "columns", "image_orientation_patient").first()
    return KnownSeries(
        patient_id=series.study.patient.patient_id, study_instance_uid=series.study.study_instance_uid,
        study_pk=series.study_id, series_pk=series.pk,
        rows=reference.rows if reference else attrs.rows, columns=reference.columns if reference else attrs.columns,
        orientation=reference.image_orientation_patient if reference else attrs.image_orientation_patient,
    )


@dataclass
class Pending:
    """A file that passed the checks and lies whole in storage, its rows not yet inserted (see ``IngestBatch``)."""

    result: IngestResult
    attrs: IndexedAttributes
    path: str
    size: int
    sha256: str

    def settle(self, status: Outcome, reason: str = "", failure: FailureReason | None = None,
               study_id: int | None = None) -> None:
        self.result.status, self.result.reason, self.result.failure = status, reason, failure
        self.result.study_id = study_id

    def instance(self, series: KnownSeries, user) -> Instance:
        attrs = self.attrs
        return Instance(
            sop_instance_uid=attrs.sop_instance_uid, sop_class_uid=attrs.sop_class_uid, series_id=series.series_pk,
            instance_number=attrs.instance_number, image_position_patient=attrs.image_position_patient,
            image_orientation_patient=attrs.image_orientation_patient, pixel_spacing=attrs.pixel_spacing,
            slice_thickness=attrs.slice_thickness, slice_location=attrs.slice_location, rows=attrs.rows,
            columns=attrs.columns, number_of_frames=attrs.number_of_frames,
            transfer_syntax_uid=attrs.transfer_syntax_uid, file=self.path, size=self.size, sha256=self.sha256,
            uploaded_by=user,
        )


def _stored_versions(pending: list[Pending]) -> dict[str, tuple[str, int]]:
    """SHA-256 and study of the pending SOP instances already in the archive, in one query."""
    rows = (Instance.objects.filter(sop_instance_uid__in=[p.attrs.sop_instance_uid for p in pending])
            .values_list("sop_instance_uid", "sha256", "series__study_id"))
    return {uid: (sha256, study_id) for uid, sha256, study_id in rows}


def _insert_rows(pending: list[Pending], known_series: dict[str, KnownSeries], user,
                 source_label: str) -> dict[str, KnownSeries]:
    """Judge every pending file against the archive and insert the rows of the new ones in one transaction.

    Settles each pending result (stored, duplicate, conflict, or rejected by the series it would join) and returns
    the batch's series memory with the series looked up here; raises IntegrityError when another delivery inserted
    one of these SOP instances after the look-up (nothing is committed then, and the caller judges again).
    """
    stored = _stored_versions(pending)
    known = dict(known_series)
    rows: list[Instance] = []
    with transaction.atomic():
        new_series = {p.attrs.series_instance_uid: p.attrs for p in pending
                      if p.attrs.sop_instance_uid not in stored and p.attrs.series_instance_uid not in known}
        rows_of = {uid: _hierarchy(attrs, source_label) for uid, attrs in new_series.items()}  # in arrival order
        for uid, (study, series) in sorted(rows_of.items(), key=lambda item: item[1][1].pk):  # one lock order
            known[uid] = _lock_series(series.pk, new_series[uid])
            study.save(update_fields=["updated_at"])  # the worklist orders by recent activity
        for item in pending:
            previous = stored.get(item.attrs.sop_instance_uid)
            if previous is not None:
                sha256, study_id = previous
                if sha256 == item.sha256:
                    item.settle(Outcome.DUPLICATE, "already stored with identical bytes", study_id=study_id)
                else:
                    item.settle(Outcome.CONFLICT, "this SOP Instance UID is already stored with different content",
                                FailureReason.DUPLICATE_SOP_INSTANCE, study_id=study_id)
                continue
            series = known[item.attrs.series_instance_uid]
            try:
                series.check(item.attrs)
            except Rejected as rejection:
                item.settle(Outcome.REJECTED, rejection.reason, rejection.failure)
                continue
            item.settle(Outcome.STORED, study_id=series.study_pk)
            rows.append(item.instance(series, user))
        Instance.objects.bulk_create(rows)
    return known


class IngestBatch:
    """One delivery of files (an upload, a STOW body, an import run, an ingest job, a network association).

    Each file is parsed once, checked and written whole to storage as it arrives; its rows wait in ``pending``
    and are inserted with the others' in one transaction every ``FLUSH_EVERY`` files and when the batch closes
    (one existence query and one multi-row INSERT instead of a query, an INSERT and a commit per file). A file
    lands whole, file and row, or not at all: a crash before the commit leaves no row, and a failed commit
    deletes the batch's uncommitted files. Results of pending files are final after ``flush``/``close``: a caller
    that acknowledges each file on its own before the batch ends (a DIMSE C-STORE response) calls ``flush`` first.
    Closing hands every study that gained instances to the analysis app, which runs it once it is stable.
    """

    def __init__(self, user=None, *, allow_secondary_capture: bool = False, source_label: str = "",
                 expected_study_uid: str | None = None, analyze: bool = True) -> None:
        self.user = user if user is not None and getattr(user, "is_authenticated", False) else None
        self.allow_secondary_capture, self.source_label = allow_secondary_capture, source_label
        self.expected_study_uid, self.analyze = expected_study_uid, analyze
        self.results: list[IngestResult] = []
        self.known_series: dict[str, KnownSeries] = {}
        self.pending: list[Pending] = []

    def __enter__(self) -> IngestBatch:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def add_file(self, source: BinaryIO | bytes | Spooled, name: str) -> IngestResult:
        """Check and store one file; the result is final for a refusal, and after the next flush otherwise."""
        result = self._write(source, name)
        self.results.append(result)
        if len(self.pending) >= FLUSH_EVERY:
            self.flush()
        return result

    def _write(self, source: BinaryIO | bytes | Spooled, name: str) -> IngestResult:
        attrs: IndexedAttributes | None = None
        try:
            spooled = source if isinstance(source, Spooled) else spool(source)
            try:
                ds = read_dataset(spooled.file)
                attrs = IndexedAttributes.from_dataset(ds)
                check_dataset(ds, attrs, allow_secondary_capture=self.allow_secondary_capture)
                del ds
                if self.expected_study_uid and attrs.study_instance_uid != self.expected_study_uid:
                    raise Rejected(f"Study Instance UID {attrs.study_instance_uid} does not match the target study "
                                   f"{self.expected_study_uid}", FailureReason.DATASET_DOES_NOT_MATCH)
                if any(p.attrs.sop_instance_uid == attrs.sop_instance_uid for p in self.pending):
                    self.flush()  # the same instance twice in one delivery: the second is judged against the first
                spooled.file.seek(0)
                path = save_new(storage_path(attrs), spooled.file)
            finally:
                spooled.file.close()
        except Rejected as rejection:
            return IngestResult(
                name=name, status=Outcome.REJECTED, reason=rejection.reason, failure=rejection.failure,
                sop_instance_uid=attrs.sop_instance_uid if attrs else rejection.identifier("SOPInstanceUID"),
                study_instance_uid=attrs.study_instance_uid if attrs else rejection.identifier("StudyInstanceUID"),
                sop_class_uid=attrs.sop_class_uid if attrs else rejection.identifier("SOPClassUID"),
            )
        result = IngestResult(name=name, status=Outcome.STORED, sop_instance_uid=attrs.sop_instance_uid,
                              study_instance_uid=attrs.study_instance_uid, sop_class_uid=attrs.sop_class_uid)
        self.pending.append(Pending(result, attrs, path, spooled.size, spooled.sha256))
        return result

    def flush(self) -> None:
        """Insert the pending files' rows in one transaction and settle their results; files that did not become
        instances (duplicates, conflicts, refusals, a failed commit) are deleted from storage."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        try:
            for attempt in range(FLUSH_ATTEMPTS):
                try:
                    self.known_series = _insert_rows(pending, self.known_series, self.user, self.source_label)
                    break
                except IntegrityError:
                    # Another delivery stored one of these SOP instances since the look-up: judge them again.
                    if attempt == FLUSH_ATTEMPTS - 1:
                        raise
        except BaseException as exc:
            for item in pending:  # nothing of these files stays, and their results must not say "stored"
                default_storage.delete(item.path)
                item.settle(Outcome.REJECTED, f"not stored: {type(exc).__name__}", FailureReason.OUT_OF_RESOURCES)
            raise
        for item in pending:
            if item.result.status != Outcome.STORED:
                default_storage.delete(item.path)

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
        """Insert what is pending, then queue analysis for the studies that gained instances in this batch."""
        self.flush()
        new_studies = {r.study_id for r in self.results if r.status == Outcome.STORED}
        if self.analyze and new_studies and settings.LUNGSCOPE_ANALYZE_ON_INGEST:
            for study_id in sorted(new_studies):
                transaction.on_commit(lambda study_id=study_id: _queue_analysis(study_id))


def ingest_file(source: BinaryIO | bytes | Spooled, name: str, *, user=None, allow_secondary_capture: bool = False,
                source_label: str = "", expected_study_uid: str | None = None) -> IngestResult:
    """Store one file on its own, or say why not; queues no analysis (callers that want one ask for it).

    Never raises for bad input; database and storage errors propagate.
    """
    batch = IngestBatch(user, allow_secondary_capture=allow_secondary_capture, source_label=source_label,
                        expected_study_uid=expected_study_uid, analyze=False)
    with batch:
        return batch.add_file(source, name)


def _queue_analysis(study_id: int) -> None:
    """Tell the apps above this one (analysis) that a study gained instances, through ``instances_received``.

    The analysis app decides when to run (once the study is stable, one run at a time). The files are stored
    whatever happens here: a broker outage must not turn a successful upload into an error, so a failure is logged
    and the study stays "new", to be analysed on request.
    """
    for receiver, outcome in instances_received.send_robust(sender=Study, study_id=study_id):
        if isinstance(outcome, Exception):
            logger.error("could not queue analysis of study %s (%s)", study_id, receiver, exc_info=outcome)
