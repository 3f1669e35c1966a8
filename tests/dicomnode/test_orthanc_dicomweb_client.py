"""A third-party client of lungscope's DICOMweb: Orthanc's DICOMweb plugin, with lungscope configured as a remote
DICOMweb server, lists lungscope's studies (QIDO-RS) and retrieves one into Orthanc (WADO-RS)."""
from __future__ import annotations

import pydicom
import pytest
from dicomnode_helpers import DICOMWEB_PLUGIN
from factories import make_user
from rest_framework.authtoken.models import Token

from webapp.studies.ingest import IngestBatch

pytestmark = pytest.mark.slow
STUDY_INSTANCE_UID = "0020000D"


def test_orthanc_lists_and_retrieves_a_lungscope_study(live_server, storage_dir, start_orthanc, ricord_slab):
    if not DICOMWEB_PLUGIN.exists():
        pytest.skip("Orthanc's DICOMweb plugin (orthanc-dicomweb) is not installed")
    with IngestBatch() as batch:
        for path in ricord_slab:
            batch.add_file(path.read_bytes(), path.name)
    assert all(r.landed for r in batch.results)
    study_uid = batch.results[0].study_instance_uid
    token = Token.objects.create(user=make_user("pacs", "clinician")).key
    orthanc = start_orthanc({}, {"lungscope": {"Url": f"{live_server.url}/dicomweb/",
                                               "HttpHeaders": {"Authorization": f"Token {token}"}}})

    assert "lungscope" in orthanc.get("/dicom-web/servers")
    listed = orthanc.post("/dicom-web/servers/lungscope/get", {"Uri": "/studies"})
    assert listed.ok, listed.text
    assert [s[STUDY_INSTANCE_UID]["Value"][0] for s in listed.json()] == [study_uid]

    retrieved = orthanc.post("/dicom-web/servers/lungscope/retrieve",
                             {"Resources": [{"Study": study_uid}], "Synchronous": True})
    assert retrieved.ok, retrieved.text
    found = orthanc.post("/tools/find", {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid},
                                         "Expand": True}).json()
    sent = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in ricord_slab}
    assert {i["MainDicomTags"]["SOPInstanceUID"] for i in found} == sent
