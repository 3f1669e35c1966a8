"""Helpers shared by the platform tests (imported by name: pytest puts this folder on sys.path)."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def variant(path: Path, **changes) -> bytes:
    """A copy of a DICOM file with some elements changed (a new SOP Instance UID unless given)."""
    ds = pydicom.dcmread(path)
    changes.setdefault("SOPInstanceUID", pydicom.uid.generate_uid())
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return dicom_bytes(ds)


def zip_of(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def stored_files(storage_dir: Path) -> set[str]:
    """DICOM files present in storage, as storage names (what ``Instance.file`` holds)."""
    return {str(p.relative_to(storage_dir)) for p in (storage_dir / "dicom").rglob("*") if p.is_file()} \
        if (storage_dir / "dicom").exists() else set()


def assert_no_orphans(storage_dir: Path) -> None:
    from webapp.studies.models import Instance

    assert stored_files(storage_dir) == set(Instance.objects.values_list("file", flat=True))


def as_new_study(paths: list[Path], **tags) -> list[bytes]:
    """The files of one series rewritten into a fresh study and series (new UIDs) with ``tags`` applied."""
    study_uid, series_uid = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    return [variant(p, StudyInstanceUID=study_uid, SeriesInstanceUID=series_uid, **tags) for p in paths]
