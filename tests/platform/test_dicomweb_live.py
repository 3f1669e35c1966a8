"""DICOMweb against a live server, driven by ``dicomweb-client`` and plain HTTP: store, search, retrieve."""
from __future__ import annotations

import csv
import email
import email.policy
import hashlib
import uuid
from pathlib import Path

import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.pixels import pixel_array

from webapp.studies.models import Instance

pytestmark = pytest.mark.django_db(transaction=True)
DICOM_MULTIPART = 'multipart/related; type="application/dicom"'


@pytest.fixture
def session(token) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    return session


@pytest.fixture
def dicomweb(live_server, session, storage_dir) -> DICOMwebClient:
    return DICOMwebClient(f"{live_server.url}/dicomweb", session=session)


def stow(session, url: str, files: list[bytes]) -> requests.Response:
    boundary = uuid.uuid4().hex
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
                    for data in files) + f"--{boundary}--\r\n".encode()
    return session.post(url, data=body, headers={
        "Content-Type": f'{DICOM_MULTIPART}; boundary={boundary}', "Accept": "application/dicom+json"})


def multipart_bodies(response: requests.Response) -> list[bytes]:
    """Parse a multipart/related response with the standard library (independent of the server's code)."""
    head = f"Content-Type: {response.headers['Content-Type']}\r\n\r\n".encode()
    message = email.message_from_bytes(head + response.content, policy=email.policy.HTTP)
    return [part.get_payload(decode=True) for part in message.iter_parts()]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_store_search_retrieve_round_trip_with_dicomweb_client(dicomweb, phantom_files):
    datasets = [pydicom.dcmread(p) for p in phantom_files]
    stored = dicomweb.store_instances(datasets)
    assert len(stored.ReferencedSOPSequence) == len(phantom_files) and "FailedSOPSequence" not in stored
    study_uid, series_uid = datasets[0].StudyInstanceUID, datasets[0].SeriesInstanceUID

    studies = dicomweb.search_for_studies(search_filters={"PatientID": datasets[0].PatientID})
    assert [s["0020000D"]["Value"][0] for s in studies] == [study_uid]
    assert dicomweb.search_for_studies(search_filters={"PatientID": "nobody"}) == []
    assert len(dicomweb.search_for_series(study_uid)) == 1
    assert len(dicomweb.search_for_instances(study_uid, series_uid, limit=3, offset=6)) == 2

    sop_uid = datasets[2].SOPInstanceUID
    retrieved = dicomweb.retrieve_instance(study_uid, series_uid, sop_uid)
    assert retrieved.SOPInstanceUID == sop_uid and (retrieved.pixel_array == datasets[2].pixel_array).all()
    assert len(dicomweb.retrieve_series(study_uid, series_uid)) == len(phantom_files)
    assert len(dicomweb.retrieve_study(study_uid)) == len(phantom_files)

    metadata = dicomweb.retrieve_series_metadata(study_uid, series_uid)
    assert len(metadata) == len(phantom_files)
    item = next(m for m in metadata if m["00080018"]["Value"] == [sop_uid])
    assert item["7FE00010"]["BulkDataURI"].endswith(f"/instances/{sop_uid}/frames/1")
    assert "InlineBinary" not in item["7FE00010"]

    frames = dicomweb.retrieve_instance_frames(study_uid, series_uid, sop_uid, frame_numbers=[1])
    assert frames[0] == datasets[2].PixelData  # native little-endian: the stored bytes as they are


def test_stored_bytes_come_back_byte_equal_and_via_wado_uri(dicomweb, session, live_server, phantom_files):
    dicomweb.store_instances([pydicom.dcmread(p) for p in phantom_files])
    instance = Instance.objects.select_related("series__study").first()
    series, study = instance.series, instance.series.study
    url = f"{live_server.url}/dicomweb/studies/{study.study_instance_uid}/series/{series.series_instance_uid}"
    bodies = multipart_bodies(session.get(url, headers={"Accept": DICOM_MULTIPART}))
    assert sorted(map(sha, bodies)) == sorted(Instance.objects.values_list("sha256", flat=True))

    wado = session.get(f"{live_server.url}/wado", params={
        "requestType": "WADO", "studyUID": study.study_instance_uid, "seriesUID": series.series_instance_uid,
        "objectUID": instance.sop_instance_uid, "contentType": "application/dicom"})
    assert wado.status_code == 200 and wado.headers["Content-Type"] == "application/dicom"
    assert sha(wado.content) == instance.sha256
    jpeg = session.get(f"{live_server.url}/wado", params={
        "requestType": "WADO", "studyUID": "1", "seriesUID": "2", "objectUID": "3", "contentType": "image/jpeg"})
    assert jpeg.status_code == 406
    assert session.get(url, headers={"Accept": 'multipart/related; type="image/png"'}).status_code == 406
    assert session.get(f"{live_server.url}/dicomweb/studies/1.2.3").status_code == 404


def test_tcia_series_ingest_completely_and_come_back_byte_equal(session, live_server, storage_dir, shared_data):
    root = shared_data / "real-ct" / "tcia-lung-pet-ct-dx"
    manifest = [row for row in csv.DictReader((root / "manifest.csv").open()) if row["modality"] == "CT"]
    folders: dict[Path, set[str]] = {}
    for row in manifest:
        folders.setdefault((root / row["path"]).parent, set()).add(row["sha256"])
    assert len(folders) == 2 and sorted(map(len, folders.values())) == [30, 64]
    for folder, hashes in folders.items():
        response = stow(session, f"{live_server.url}/dicomweb/studies",
                        [p.read_bytes() for p in sorted(folder.glob("*.dcm"))])
        assert response.status_code == 200, response.text
        assert len(response.json()["00081199"]["Value"]) == len(hashes)
        study_url = response.json()["00081190"]["Value"][0]
        assert sorted(map(sha, multipart_bodies(session.get(study_url, headers={"Accept": DICOM_MULTIPART})))) \
            == sorted(hashes)


def test_stow_of_every_variant_answers_per_file_never_5xx(session, live_server, storage_dir, shared_data):
    files = [p.read_bytes() for p in sorted((shared_data / "dicom-variants").rglob("*")) if p.is_file()]
    response = stow(session, f"{live_server.url}/dicomweb/studies", files)
    assert response.status_code == 202, response.text
    body = response.json()
    referenced, failed = body["00081199"]["Value"], body["00081198"]["Value"]
    assert len(referenced) + len(failed) == len(files)
    reasons = {item["00081197"]["Value"][0] for item in failed}
    assert reasons <= {0x0110, 0x0111, 0x0122, 0xA700, 0xA900, 0xC000} and 0x0122 in reasons
    assert all(item["00000902"]["Value"][0] for item in failed)

    only_failures = stow(session, f"{live_server.url}/dicomweb/studies", [b"not dicom"])
    assert only_failures.status_code == 409
    wrong_study = stow(session, f"{live_server.url}/dicomweb/studies/1.2.3.4", files[-1:])
    assert wrong_study.status_code == 409
    not_multipart = session.post(f"{live_server.url}/dicomweb/studies", data=b"x",
                                 headers={"Content-Type": "application/dicom"})
    assert not_multipart.status_code == 415
    broken = session.post(f"{live_server.url}/dicomweb/studies", data=b"garbage",
                          headers={"Content-Type": f"{DICOM_MULTIPART}; boundary=zzz"})
    assert broken.status_code == 400


def test_jpeg2000_frames_are_served_decoded(dicomweb, session, live_server, shared_data):
    files = sorted((shared_data / "real-ct" / "totalsegmentator-abdomen-j2k" / "example_ct_dicom").iterdir())
    assert stow(session, f"{live_server.url}/dicomweb/studies", [p.read_bytes() for p in files]).status_code == 200
    instance = Instance.objects.select_related("series__study").get(sop_instance_uid=pydicom.dcmread(
        files[0], stop_before_pixels=True).file_meta.MediaStorageSOPInstanceUID)
    series, study = instance.series, instance.series.study
    frames = dicomweb.retrieve_instance_frames(study.study_instance_uid, series.series_instance_uid,
                                               instance.sop_instance_uid, frame_numbers=[1])
    expected = pixel_array(pydicom.dcmread(files[0]), index=0)
    assert frames[0] == expected.astype(expected.dtype.newbyteorder("<")).tobytes()
    metadata = dicomweb.retrieve_instance_metadata(study.study_instance_uid, series.series_instance_uid,
                                                   instance.sop_instance_uid)
    # the file's blank UIDs are shown as the index derived them, so a viewer can follow QIDO's answers
    assert metadata["0020000E"]["Value"] == [series.series_instance_uid]


def test_anonymous_dicomweb_client_is_refused(live_server, storage_dir):
    client = DICOMwebClient(f"{live_server.url}/dicomweb")
    with pytest.raises(requests.HTTPError) as error:
        client.search_for_studies()
    assert error.value.response.status_code in (401, 403)
