"""``import_dicom`` (folders, zips, DICOMDIR file-sets) and ``import_images`` (PNG/JPEG as Secondary Capture)."""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command
from PIL import Image
from platform_helpers import assert_no_orphans, zip_of

from webapp.studies.models import Instance, Series, Study

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_import_dicom_walks_a_folder_with_spaces_and_a_zip(storage_dir, shared_data, tmp_path, phantom_files):
    patient = shared_data / "real-ct" / "tcia-lung-pet-ct-dx" / "Lung-PET-CT-Dx" / "Lung_Dx-A0002"
    folder = next(patient.rglob("*B40f*"))  # "3.000000-ThoraxRoutine  8.0.0  B40f-10983": spaces, two in a row
    archive = tmp_path / "phantom.zip"
    archive.write_bytes(zip_of({p.name: p.read_bytes() for p in phantom_files}))
    summary = run("import_dicom", str(folder), str(archive))
    assert summary.startswith(f"{30 + len(phantom_files)} stored, 0 duplicate, 0 rejected, 0 conflict")
    assert Instance.objects.count() == 30 + len(phantom_files)
    assert "0 stored, 30 duplicate" in run("import_dicom", str(folder))
    assert_no_orphans(storage_dir)


def test_import_dicom_sums_reading_warnings_up_per_study(storage_dir, tmp_path):
    from factories import odd_header_series

    for seed in (3, 4):
        odd_header_series(tmp_path / f"odd-{seed}", seed=seed)
    verbose = io.StringIO()
    call_command("import_dicom", str(tmp_path / "odd-3"), "--verbose", stdout=io.StringIO(), stderr=verbose)
    details = [line for line in verbose.getvalue().splitlines() if line.startswith("  ")]
    assert len(details) == 1 and " x Invalid value for VR UI: '" in details[0], verbose.getvalue()

    err = io.StringIO()  # both studies (the first one's files are duplicates now, read again all the same)
    call_command("import_dicom", str(tmp_path), stdout=io.StringIO(), stderr=err)
    warned = [line for line in err.getvalue().splitlines() if line.startswith("warning:")]
    uids = sorted(Study.objects.values_list("study_instance_uid", flat=True))
    assert len(uids) == 2 and Instance.objects.count() == 16
    assert sorted(line.split(":")[1].strip() for line in warned) == [f"study {uid}" for uid in uids]
    assert all("reading warnings (" in line and "Invalid value for VR UI: '...'" in line for line in warned)
    assert "Invalid value for VR UI: '" not in err.getvalue().replace("'...'", "")  # no raw warning printed


def test_import_dicom_reads_a_dicomdir_file_set(storage_dir, shared_data):
    summary = run("import_dicom", str(shared_data / "dicom-variants" / "dicomdir_fileset" / "DICOMDIR"))
    assert summary.startswith("10 stored, 0 duplicate, 21 rejected")  # 11 CT files, one with a tilted orientation
    assert "x not a CT image (SOP class MR Image Storage" in summary
    assert set(Series.objects.values_list("modality", flat=True)) == {"CT"}


def test_import_dicom_fails_when_nothing_lands(storage_dir, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CommandError, match="nothing was imported"):
        run("import_dicom", str(tmp_path), str(tmp_path / "missing"))


def test_import_images_builds_secondary_capture_studies(storage_dir, tmp_path):
    images = tmp_path / "slices"
    images.mkdir()
    gradient = np.tile(np.arange(96, dtype=np.uint8), (80, 1))
    Image.fromarray(gradient).save(images / "a.png")
    Image.fromarray(np.dstack([gradient] * 3)).save(images / "b.jpg", quality=95)
    (images / "broken.png").write_bytes(b"not an image")
    summary = run("import_images", "--label", "COVID", str(images))
    assert summary.startswith("2 stored, 0 duplicate, 1 rejected")
    assert set(Study.objects.values_list("source_label", flat=True)) == {"COVID"}
    instance = Instance.objects.get(series__series_description="a.png")
    with instance.file.open("rb") as f:
        ds = pydicom.dcmread(f)
    assert ds.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage and ds.Modality == "CT"
    assert (ds.pixel_array == gradient).all() and instance.rows == 80 and instance.columns == 96
    assert "0 stored, 2 duplicate" in run("import_images", "--label", "COVID", str(images))
