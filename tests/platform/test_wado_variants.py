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
