"""Every instance that ingest accepts can be served back: metadata as DICOM JSON and each frame decoded raw."""
from __future__ import annotations

import pytest

from webapp.studies.ingest import IngestBatch
from webapp.studies.models import Instance

pytestmark = pytest.mark.django_db


def test_metadata_and_frames_for_every_stored_variant(api, storage_dir, shared_data):
    with IngestBatch() as batch:
        for path in sorted((shared_data / "dicom-variants").rglob("*")) + sorted(
                (shared_data / "real-ct" / "lungmask-two-slices").glob("*.dcm")):
            if path.is_file():
                batch.add_file(path.read_bytes(), path.name)
    instances = Instance.objects.select_related("series__study")
    assert instances.count() >= 12
    for instance in instances:
        base = (f"/dicomweb/studies/{instance.series.study.study_instance_uid}/series/"
                f"{instance.series.series_instance_uid}/instances/{instance.sop_instance_uid}")
        metadata = api.get(f"{base}/metadata")
        assert metadata.status_code == 200, (instance.file.name, metadata.content[:300])
        item = metadata.json()[0]
        assert item["00080060"]["Value"] == ["CT"]  # filled in where the file has no Modality
        assert item["0020000D"]["Value"] == [instance.series.study.study_instance_uid]
        last = instance.number_of_frames
        frames = api.get(f"{base}/frames/1,{last}", HTTP_ACCEPT="multipart/related; type=application/octet-stream")
        assert frames.status_code == 200, instance.file.name
        body = b"".join(frames.streaming_content)
        frame_bytes = instance.rows * instance.columns * 2  # every stored CT here is 16-bit grey
        assert body.count(b"transfer-syntax=1.2.840.10008.1.2.1") == 2 and len(body) > 2 * frame_bytes
        assert api.get(f"{base}/frames/{last + 1}").status_code == 404
        assert api.get(f"{base}/frames/x").status_code == 400


def test_a_stored_file_gone_from_storage_is_a_404_on_every_retrieval(api, storage_dir, phantom_files):
    """A viewer still loading a study whose files were removed (or lost) gets a 404 that says why, never a 500,
    and a study retrieval answers before it starts to stream rather than cutting the body short."""
    from django.core.files.storage import default_storage

    with IngestBatch() as batch:
        for path in phantom_files[:2]:
            batch.add_file(path.read_bytes(), path.name)
    gone, kept = Instance.objects.select_related("series__study").order_by("instance_number")[:2]
    default_storage.delete(gone.file.name)
    study, series = gone.series.study.study_instance_uid, gone.series.series_instance_uid
    base = f"/dicomweb/studies/{study}/series/{series}/instances/{gone.sop_instance_uid}"
    uri = f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={gone.sop_instance_uid}"
    for url, accept in ((base, "multipart/related; type=application/dicom"), (f"{base}/metadata", "*/*"),
                        (f"{base}/frames/1", "multipart/related; type=application/octet-stream"),
                        (f"/dicomweb/studies/{study}", "multipart/related; type=application/dicom"), (uri, "*/*")):
        response = api.get(url, HTTP_ACCEPT=accept)
        assert response.status_code == 404, (url, response.status_code)
        assert "missing" in response.json()["detail"], url
    kept_url = f"/dicomweb/studies/{study}/series/{series}/instances/{kept.sop_instance_uid}"
    assert api.get(kept_url, HTTP_ACCEPT="multipart/related; type=application/dicom").status_code == 200


@pytest.mark.django_db
def test_a_nul_character_in_a_uid_or_query_is_a_400_on_every_dicomweb_route(api):
    """No DICOM UID or value holds a NUL; PostgreSQL refuses one in a query, which was a 500 on retrievals, searches
    and WADO-URI alike."""
    for url in ("/dicomweb/studies/1.2%00/series", "/dicomweb/studies/1.2/series/%00/instances",
                "/dicomweb/studies/1.2/series/1.3/instances/1.4%00/metadata", "/dicomweb/studies?PatientID=a%00",
                "/wado?requestType=WADO&studyUID=%00&seriesUID=1&objectUID=1"):
        response = api.get(url, HTTP_ACCEPT="*/*")
        assert response.status_code == 400, (url, response.status_code)
        assert "NUL" in response.json()["detail"], url
    assert api.get("/dicomweb/studies/1.2/series", HTTP_ACCEPT="*/*").status_code == 200  # a plain UID still works
