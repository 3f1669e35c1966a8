"""The DICOM listener: a C-ECHO, C-STORE and C-FIND SCP (pynetdicom) that feeds received instances to the ingest
and answers study and series queries (``find.py``).

Every association is one ``IngestBatch``, the same as one STOW-RS request: each instance passes the same checks,
duplicates and conflicts are judged the same way, and when the association ends (released, aborted or the
connection dropped) the batch is closed, which hands the studies that gained instances to the analysis (its
stable-study rule: a series sent over several associations is analysed once). The batch is flushed before each
C-STORE response: a batch's results are provisional until its rows commit, and a sender may delete its copy on
success, so 0x0000 must mean "committed" and a conflict or a series mismatch must get its own failure status. An
instance that is refused gets a C-STORE failure status with the reason in Error Comment; an instance cut off by a
dropped association never reaches the handler (pynetdicom delivers only complete data sets), so nothing is half
written.

Calling AE titles are checked against the ``DicomPeer`` allow-list (``may_send``) at association time, read from
the database for each association so that an admin's change applies to the next one without a restart. A refused
association is written to the audit log.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from django.db import close_old_connections, connection
from pydicom import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID, AllTransferSyntaxes
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind, Verification

from webapp.review.models import AuditEvent
from webapp.studies.ingest import IngestBatch, IngestResult

from .find import FindError, find
from .models import DicomPeer

logger = logging.getLogger(__name__)

#: Never a valid AE title (backslash is outside the AE repertoire): an empty allow-list refuses everyone.
NOBODY = "\\"
SUCCESS = 0x0000
PROCESSING_FAILURE = 0x0110
REFUSED_ACTION = "dicom.association_refused"


def decodable_transfer_syntaxes() -> list[UID]:
    """The transfer syntaxes whose pixel data the ingest can decode here: the uncompressed ones and every
    compressed one with an installed pydicom decoder plugin (JPEG 2000, JPEG-LS, JPEG lossless, RLE, ...)."""
    usable = []
    for uid in map(UID, AllTransferSyntaxes):
        if not uid.is_compressed:
            usable.append(uid)
            continue
        try:
            if get_decoder(uid).is_available:
                usable.append(uid)
        except NotImplementedError:
            continue
    return [uid for uid in usable if uid in ALL_TRANSFER_SYNTAXES]


def store_status(result: IngestResult) -> Dataset:
    """The C-STORE response status for one ingest result: success when the data is in the archive, otherwise the
    failure code the ingest chose (the STOW-RS Failure Reason codes are DIMSE status codes) and its reason."""
    status = Dataset()
    if result.landed:
        status.Status = SUCCESS
        return status
    status.Status = int(result.failure) if result.failure is not None else PROCESSING_FAILURE
    status.ErrorComment = result.reason[:64]
    return status


class Listener:
    """Builds the pynetdicom AE and holds the per-association batches."""

    def __init__(self, ae_title: str) -> None:
        self.ae = AllowListAE(ae_title=ae_title)
        self.ae.add_supported_context(Verification)
        self.ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
        syntaxes = decodable_transfer_syntaxes()
        # Every storage SOP class is accepted at association, so a PACS pushing a whole study is not refused
        # outright; instances the ingest does not take (not CT) get a per-instance "SOP class not supported".
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, syntaxes)
        self.batches: dict[int, tuple[IngestBatch, threading.Lock]] = {}
        self.lock = threading.Lock()

    def handlers(self) -> list[tuple]:
        return [(evt.EVT_C_ECHO, lambda event: SUCCESS), (evt.EVT_C_STORE, self.on_store), (evt.EVT_C_FIND, on_find),
                (evt.EVT_REJECTED, on_rejected), (evt.EVT_RELEASED, self.on_end), (evt.EVT_ABORTED, self.on_end),
                (evt.EVT_CONN_CLOSE, self.on_end)]

    def serve(self, host: str, port: int, *, block: bool = True):
        """Listen on ``host:port``; with ``block=False`` returns the server (``.shutdown()`` stops it)."""
        return self.ae.start_server((host, port), block=block, evt_handlers=self.handlers())

    def on_store(self, event) -> Dataset:
        close_old_connections()
        with self.lock:
            batch, batch_lock = self.batches.setdefault(id(event.assoc), (IngestBatch(
                source_label=f"DICOM from {event.assoc.requestor.ae_title}"), threading.Lock()))
        name = f"C-STORE {event.request.AffectedSOPInstanceUID} from {event.assoc.requestor.ae_title}"
        try:
            with batch_lock:  # the batch is not closed under a store in progress
                result = batch.add_file(event.encoded_dataset(), name)
                batch.flush()  # the status answers for this instance: its row is committed first
        except Exception as exc:  # database or storage away: this instance fails, the listener goes on
            logger.exception("could not ingest %s", name)
            status = Dataset()
            status.Status, status.ErrorComment = 0xA700, f"not stored: {type(exc).__name__}"[:64]
            return status
        return store_status(result)

    def on_end(self, event) -> None:
        """Close the association's batch: on release or abort (the association's thread) or when the connection
        drops (the transport's thread; a store still in progress finishes first)."""
        with self.lock:
            entry = self.batches.pop(id(event.assoc), None)
        if entry is not None:
            batch, batch_lock = entry
            try:
                with batch_lock:
                    batch.close()
            except Exception:
                logger.exception("could not hand the received studies to the analysis")
        connection.close()  # this thread ends with the association


def on_find(event):
    """C-FIND: pending (0xFF00) with each match, then success; 0xFE00 when the caller cancels, 0xC000 when the
    query cannot be answered (with the reason in Error Comment)."""
    close_old_connections()
    try:
        for answer in find(event.identifier):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, answer
    except FindError as exc:
        status = Dataset()
        status.Status, status.ErrorComment = 0xC000, str(exc)[:64]
        yield status, None
        return
    yield SUCCESS, None


class AllowListAE(AE):
    """An AE whose required calling AE titles are the peers allowed to send, read at each association."""

    @property
    def require_calling_aet(self) -> list[str]:
        close_old_connections()
        titles = list(DicomPeer.objects.filter(may_send=True).values_list("ae_title", flat=True))
        return titles or [NOBODY]

    @require_calling_aet.setter
    def require_calling_aet(self, ae_titles: Iterable[str]) -> None:
        """Fixed lists are not used: the allow-list lives in the database."""


def on_rejected(event) -> None:
    """Audit a refused association: who called, from where, asking for which AE title."""
    requestor = event.assoc.requestor
    primitive = requestor.primitive
    AuditEvent.objects.create(
        action=REFUSED_ACTION, object_type="dicompeer", object_id=str(requestor.ae_title)[:64],
        after={"calling_ae_title": requestor.ae_title, "address": requestor.address, "port": requestor.port,
               "called_ae_title": getattr(primitive, "called_ae_title", ""),
               "reason": "calling AE title not on the allow-list"},
    )
    logger.warning("refused association from %s at %s:%s", requestor.ae_title, requestor.address, requestor.port)
    connection.close()  # the association's thread ends here
