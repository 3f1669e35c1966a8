"""Results back to the PACS, end to end: Orthanc (the hospital PACS) pushes a real CT slab to the listener, the
study is analysed once by a real worker, and the SR, the Segmentation and the Secondary Capture come back into
Orthanc (C-STORE) with references to the source series; a clinician's correction is then re-sent as a new SR
version by STOW-RS to Orthanc's DICOMweb plugin."""
from __future__ import annotations

import io

import pydicom
import pytest
from dicomnode_helpers import DICOMWEB_PLUGIN, LISTENER_AET, ORTHANC_AET
from factories import client_for, make_tiny_bundle, make_user, wait_until

from webapp.analysis.models import AnalysisRun
from webapp.dicomnode.models import Delivery, DicomPeer, WebDestination
from webapp.dicomnode.services import study_sent_status
from webapp.review.models import Box, Decision
from webapp.studies.models import Study

pytestmark = [pytest.mark.slow, pytest.mark.worker]

SEG, SR, SC = "1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.88.34", "1.2.840.10008.5.1.4.1.1.7"


def orthanc_objects(orthanc, study_uid: str) -> dict[str, list[pydicom.Dataset]]:
    """Every instance Orthanc holds for the study, parsed, by SOP Class UID."""
    found = orthanc.post("/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}}).json()
    by_class: dict[str, list[pydicom.Dataset]] = {}
    for orthanc_id in found:
        data = orthanc.get_bytes(f"/instances/{orthanc_id}/file")
        ds = pydicom.dcmread(io.BytesIO(data))
        by_class.setdefault(str(ds.SOPClassUID), []).append(ds)
    return by_class


def sr_references(ds: pydicom.Dataset) -> set[str]:
    return {ref.ReferencedSOPInstanceUID for study in ds.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for ref in series.ReferencedSOPSequence}


def test_results_go_back_to_the_pacs_and_a_correction_is_resent(start_listener, start_worker, start_orthanc,
                                                                ricord_slab, tmp_path):
    if not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc's DICOMweb plugin (orthanc-dicomweb) is not installed")
    bundle = make_tiny_bundle(tmp_path / "tiny", favour="COVID")
    start_worker(LUNGSCOPE_MODEL=str(bundle), OMP_NUM_THREADS="1")
    listener = start_listener(LUNGSCOPE_ANALYZE_ON_INGEST="true", LUNGSCOPE_MODEL=str(bundle))
    orthanc = start_orthanc({"lungscope": [LISTENER_AET, "127.0.0.1", listener.port]})
    DicomPeer.objects.create(ae_title=ORTHANC_AET, host="127.0.0.1", port=orthanc.dicom_port, is_destination=True)

    series_id = orthanc.upload(ricord_slab)[0]["ParentSeries"]
    for _ in range(2):  # the PACS sends the study twice: the second delivery is all duplicates
        answer = orthanc.post("/modalities/lungscope/store", {"Resources": [series_id], "Synchronous": True})
        assert answer.ok, answer.text
    study = Study.objects.get()
    ct = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in ricord_slab}
    ct_series = pydicom.dcmread(ricord_slab[0], stop_before_pixels=True).SeriesInstanceUID

    run = wait_until(lambda: AnalysisRun.objects.filter(study=study, status=AnalysisRun.Status.SUCCEEDED).first(),
                     240, 1.0, "the analysis of the received study")
    assert AnalysisRun.objects.filter(study=study).count() == 1  # analysed once
    wait_until(lambda: study_sent_status(study.pk) in ("sent", "failed"), 180, 1.0, "the results to be sent")
    delivery = Delivery.objects.get(run=run)
    assert (delivery.status, delivery.sr_version, delivery.error) == ("sent", 1, "")
    assert delivery.job.status == "succeeded" and delivery.job.progress == 100

    objects = orthanc_objects(orthanc, study.study_instance_uid)
    boxes = list(Box.objects.filter(analysis_run=run))
    assert len(objects[SR]) == 1 and len(objects[SC]) == 1
    sr = objects[SR][0]
    assert sr_references(sr) <= ct and sr_references(sr)
    assert {b.sop_instance_uid for b in boxes} <= sr_references(sr)
    assert objects[SC][0].SourceImageSequence[0].ReferencedSOPInstanceUID in ct
    assert objects[SC][0].StudyInstanceUID == study.study_instance_uid
    if boxes:
        seg = objects[SEG][0]
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct_series
        referenced = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
        assert {ref.ReferencedSOPInstanceUID for ref in referenced} == ct
    else:
        assert SEG not in objects
    assert set(delivery.sent_sop_instance_uids) == {str(ds.SOPInstanceUID) for group in objects.values()
                                                    for ds in group if ds.SOPClassUID != pydicom.uid.CTImageStorage}

    # A clinician corrects the study (a box of their own) and re-sends it: a new SR version, by STOW-RS only.
    clinician = make_user("doc", "clinician")
    Decision.objects.create(study=study, label="cap", reviewed=True, decided_by=clinician)
    target = sorted(ct)[0]
    Box.objects.create(study=study, sop_instance_uid=target, x0=50, y0=60, x1=120, y1=140, label="cap_lesion",
                       provenance="human", status="accepted", updated_by=clinician)
    DicomPeer.objects.filter(ae_title=ORTHANC_AET).update(is_destination=False)
    WebDestination.objects.create(name="pacs-web", url=f"{orthanc.url}/dicom-web")
    response = client_for(clinician).post(f"/api/dicom/studies/{study.pk}/resend/")
    assert response.status_code == 202, response.content
    assert response.json()["sr_version"] == 2
    wait_until(lambda: study_sent_status(study.pk) in ("sent", "failed"), 180, 1.0, "the re-sent results")
    resent = Delivery.objects.get(run=run, sr_version=2)
    assert (resent.status, resent.web.name) == ("sent", "pacs-web"), resent.error

    objects = orthanc_objects(orthanc, study.study_instance_uid)
    assert len(objects[SR]) == 2
    new_sr = next(ds for ds in objects[SR] if str(ds.SOPInstanceUID) in resent.sent_sop_instance_uids)
    assert target in sr_references(new_sr)
    assert "Drawn by a reviewer" in str(new_sr.ContentSequence)
    assert "Community acquired pneumonia" in str(new_sr.ContentSequence)
    new_seg = next(ds for ds in objects[SEG] if str(ds.SOPInstanceUID) in resent.sent_sop_instance_uids)
    assert new_seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct_series
