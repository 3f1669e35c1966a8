"""The DICOM listener against real senders: Orthanc pushing a real CT slab with C-STORE, pynetdicom for bad input.

Every way in shares the ingest rules, so these tests check what is particular to DIMSE: the allow-list at
association (refusals audited), one status per instance, and an association dropped in the middle of an instance.
"""
from __future__ import annotations

import io
import time
from pathlib import Path

import pydicom
import pynetdicom
import pytest
from dicomnode_helpers import LISTENER_AET, ORTHANC_AET, echo
from factories import wait_until
from pydicom.uid import JPEG2000Lossless, generate_uid
from pynetdicom import AE
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Find

from webapp.analysis.models import AnalysisRun
from webapp.dicomnode.listener import REFUSED_ACTION
from webapp.dicomnode.models import DicomPeer
from webapp.review.models import AuditEvent
from webapp.studies.models import Instance, Study

pytestmark = pytest.mark.slow


def stored_files(storage_dir: Path) -> set[str]:
    root = storage_dir / "dicom"
    return {str(p.relative_to(storage_dir)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def assert_no_orphans(storage_dir: Path) -> None:
    assert stored_files(storage_dir) == set(Instance.objects.values_list("file", flat=True))


def scu(calling: str = "MODALITY1", *contexts) -> AE:
    ae = AE(ae_title=calling)
    for context in contexts or (CTImageStorage,):
        ae.add_requested_context(context)
    return ae


def test_orthanc_pushes_a_real_ct_slab(start_listener, start_orthanc, ricord_slab, storage_dir):
    DicomPeer.objects.create(ae_title=ORTHANC_AET)
    listener = start_listener()
    orthanc = start_orthanc({"lungscope": [LISTENER_AET, "127.0.0.1", listener.port]})
    uploaded = orthanc.upload(ricord_slab)
    series_id = uploaded[0]["ParentSeries"]

    assert orthanc.post("/modalities/lungscope/echo", {}).ok
    answer = orthanc.post("/modalities/lungscope/store", {"Resources": [series_id], "Synchronous": True})
    assert answer.ok, answer.text

    sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in ricord_slab}
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == sent
    assert set(Instance.objects.values_list("transfer_syntax_uid", flat=True)) == {JPEG2000Lossless}
    study = Study.objects.get()
    assert study.source_label == f"DICOM from {ORTHANC_AET}"
    stored = Instance.objects.first()
    original = next(p for p in ricord_slab if pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
                    == stored.sop_instance_uid)
    received = pydicom.dcmread(stored.file.open("rb")).pixel_array
    assert received.tolist() == pydicom.dcmread(original).pixel_array.tolist()
    assert_no_orphans(storage_dir)

    # The PACS searches lungscope (C-FIND, study and series level), with the matching rules of QIDO-RS.
    query = orthanc.post("/modalities/lungscope/query", {"Level": "Study", "Query": {
        "PatientID": "MIDRC*", "StudyDate": "", "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": ""}})
    assert query.ok, query.text
    answers = orthanc.get(f"{query.json()['Path']}/answers?expand&simplify")
    assert [(a["StudyInstanceUID"], a["ModalitiesInStudy"], a["NumberOfStudyRelatedInstances"]) for a in answers] \
        == [(study.study_instance_uid, "CT", "10")]
    query = orthanc.post("/modalities/lungscope/query", {"Level": "Series", "Query": {
        "StudyInstanceUID": study.study_instance_uid, "Modality": "", "NumberOfSeriesRelatedInstances": ""}})
    answers = orthanc.get(f"{query.json()['Path']}/answers?expand&simplify")
    assert [(a["Modality"], a["NumberOfSeriesRelatedInstances"]) for a in answers] == [("CT", "10")]
    nothing = orthanc.post("/modalities/lungscope/query", {"Level": "Study", "Query": {"PatientID": "NOBODY"}})
    assert orthanc.get(f"{nothing.json()['Path']}/answers") == []

    # The PACS sends the series again: every instance is a duplicate, reported as success, nothing doubles.
    again = orthanc.post("/modalities/lungscope/store", {"Resources": [series_id], "Synchronous": True})
    assert again.ok, again.text
    assert Instance.objects.count() == 10
    assert_no_orphans(storage_dir)


def test_unknown_calling_ae_is_refused_and_audited(start_listener):
    DicomPeer.objects.create(ae_title="MODALITY1")
    DicomPeer.objects.create(ae_title="RETIRED", may_send=False)
    listener = start_listener()
    assert echo(listener.port, "MODALITY1") == 0x0000
    assert echo(listener.port, "STRANGER") is None
    assert echo(listener.port, "RETIRED") is None
    # The refusal is sent before the listener writes the audit event: wait for it.
    deadline = time.time() + 10
    while AuditEvent.objects.filter(action=REFUSED_ACTION).count() < 2 and time.time() < deadline:
        time.sleep(0.1)
    refused = {e.object_id: e.after for e in AuditEvent.objects.filter(action=REFUSED_ACTION)}
    assert set(refused) == {"STRANGER", "RETIRED"}
    assert refused["STRANGER"]["address"] == "127.0.0.1"
    assert refused["STRANGER"]["called_ae_title"] == LISTENER_AET

    # The allow-list is read at each association: an admin's change applies without a restart.
    DicomPeer.objects.create(ae_title="STRANGER")
    assert echo(listener.port, "STRANGER") == 0x0000


def test_find_refuses_an_unsupported_level(start_listener):
    DicomPeer.objects.create(ae_title="MODALITY1")
    listener = start_listener()
    ae = scu("MODALITY1", Find)
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    query = pydicom.Dataset()
    query.QueryRetrieveLevel, query.SOPInstanceUID = "IMAGE", ""
    responses = list(assoc.send_c_find(query, Find))
    assoc.release()
    assert [(status.Status, status.ErrorComment) for status, _ in responses] == [
        (0xC000, "query level IMAGE is not supported (STUDY or SERIES)")]


def _new_instance(source: Path, **changes) -> pydicom.Dataset:
    ds = pydicom.dcmread(source)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    return ds


def test_bad_instances_get_their_own_failure_status(start_listener, ricord_slab, storage_dir, tmp_path,
                                                   monkeypatch):
    # Send files as their bytes are (pynetdicom streams them), so the truncated one arrives truncated.
    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    DicomPeer.objects.create(ae_title="MODALITY1")
    listener = start_listener()
    good = _new_instance(ricord_slab[0])
    truncated = tmp_path / "truncated.dcm"
    data = ricord_slab[1].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    not_ct = _new_instance(ricord_slab[2], SOPClassUID=MRImageStorage, Modality="MR")
    not_ct.file_meta.MediaStorageSOPClassUID = MRImageStorage

    ae = scu("MODALITY1", CTImageStorage, MRImageStorage)
    for context in ae.requested_contexts:
        context.transfer_syntax = [JPEG2000Lossless]
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    assert assoc.is_established
    statuses = {name: assoc.send_c_store(ds) for name, ds in
                (("good", good), ("truncated", truncated), ("not CT", not_ct))}
    assoc.release()

    assert statuses["good"].Status == 0x0000
    assert statuses["truncated"].Status == 0xC000, statuses["truncated"]
    assert "truncated" in statuses["truncated"].ErrorComment
    assert statuses["not CT"].Status == 0x0122
    assert "not a CT image" in statuses["not CT"].ErrorComment
    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [good.SOPInstanceUID]
    assert_no_orphans(storage_dir)


def test_each_success_is_committed_and_a_series_over_two_associations_is_analysed_once(
        start_listener, ricord_slab, storage_dir):
    """The ingest batches rows; C-STORE answers each instance on its own, so its status must be final when sent."""
    DicomPeer.objects.create(ae_title="MODALITY1")
    listener = start_listener(LUNGSCOPE_ANALYZE_ON_INGEST="true", LUNGSCOPE_STABLE_STUDY_S="600")
    ae = scu("MODALITY1")
    ae.requested_contexts[0].transfer_syntax = [JPEG2000Lossless]
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in ricord_slab]

    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    for path, uid in zip(ricord_slab[:5], uids, strict=False):
        assert assoc.send_c_store(path).Status == 0x0000
        assert Instance.objects.filter(sop_instance_uid=uid).exists(), "success sent before the row was committed"
    assoc.release()
    study = wait_until(lambda: Study.objects.filter(analysis_runs__isnull=False).first(), 30, 0.2,
                       "the first association's study to be handed to the analysis")

    # The rest of the series, and the first instance again with other bytes: a conflict, answered as one.
    changed = pydicom.dcmread(ricord_slab[0])
    changed.SeriesDescription = "edited after sending"
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET)
    assert [assoc.send_c_store(path).Status for path in ricord_slab[5:]] == [0x0000] * 5
    conflict = assoc.send_c_store(changed)
    assoc.release()
    assert conflict.Status == 0x0111, conflict
    assert "different content" in conflict.ErrorComment

    time.sleep(1.0)  # the second association's end hands the study over too
    assert set(Instance.objects.values_list("sop_instance_uid", flat=True)) == set(uids)
    (run,) = AnalysisRun.objects.filter(study=study)
    assert run.status == AnalysisRun.Status.QUEUED  # one run, waiting for the study to be stable
    assert_no_orphans(storage_dir)


def test_association_dropped_mid_instance_leaves_nothing_half_written(start_listener, ricord_slab, storage_dir):
    DicomPeer.objects.create(ae_title="MODALITY1")
    listener = start_listener()
    ae = scu("MODALITY1")
    ae.requested_contexts[0].transfer_syntax = [JPEG2000Lossless]
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=LISTENER_AET, max_pdu=4096)
    assert assoc.is_established
    first = _new_instance(ricord_slab[0])
    assert assoc.send_c_store(first).Status == 0x0000

    # The next instance: the command and the first fragments of its data set, then the connection is cut.
    cut = _new_instance(ricord_slab[1])
    request = C_STORE()
    request.MessageID, request.Priority = 7, 2
    request.AffectedSOPClassUID, request.AffectedSOPInstanceUID = cut.SOPClassUID, cut.SOPInstanceUID
    request.DataSet = io.BytesIO(_dataset_bytes(cut))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    context_id = assoc.accepted_contexts[0].context_id
    fragments = list(message.encode_msg(context_id, 4096))
    assert len(fragments) > 10
    for fragment in fragments[: len(fragments) // 2]:
        assoc.dul.send_pdu(fragment)
    time.sleep(0.5)
    assoc.dul.socket.socket.close()
    assoc.kill()

    time.sleep(1.0)
    assert list(Instance.objects.values_list("sop_instance_uid", flat=True)) == [first.SOPInstanceUID]
    assert_no_orphans(storage_dir)
    assert echo(listener.port, "MODALITY1") == 0x0000  # the listener goes on serving


def _dataset_bytes(ds: pydicom.Dataset) -> bytes:
    """The data set as it travels in P-DATA: no file meta, explicit VR little endian (the encapsulated pixels
    keep their JPEG 2000 encoding)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, ds)
    return out.getvalue()
