"""Zip archives are read without trusting them: bombs, traversal, absolute paths, links, sheer numbers."""
from __future__ import annotations

import io
import stat
import zipfile

import pytest
from platform_helpers import assert_no_orphans, zip_of

from webapp.studies.ingest import IngestBatch, Outcome

pytestmark = pytest.mark.django_db


def ingest_zip(data: bytes) -> IngestBatch:
    with IngestBatch() as batch:
        batch.add_archive(io.BytesIO(data), "upload.zip")
    return batch


def reasons(batch: IngestBatch) -> dict[str, str]:
    return {r.name.removeprefix("upload.zip/"): r.reason for r in batch.results}


def test_members_are_ingested_in_order_with_names(storage_dir, phantom_files):
    batch = ingest_zip(zip_of({f"series one/{p.name}": p.read_bytes() for p in phantom_files}))
    assert [r.status for r in batch.results] == [Outcome.STORED] * len(phantom_files)
    assert batch.results[0].name == f"upload.zip/series one/{phantom_files[0].name}"
    assert_no_orphans(storage_dir)


def test_traversal_and_absolute_paths_are_refused_per_entry(storage_dir, phantom_files):
    data = phantom_files[0].read_bytes()
    batch = ingest_zip(zip_of({"../../etc/evil.dcm": data, "/abs/evil.dcm": data, "C:/win/evil.dcm": data,
                               "ok/fine.dcm": data}))
    got = reasons(batch)
    assert "path traversal" in got["../../etc/evil.dcm"]
    assert "absolute path" in got["/abs/evil.dcm"] and "absolute path" in got["C:/win/evil.dcm"]
    assert batch.results[-1].status == Outcome.STORED
    assert_no_orphans(storage_dir)


def test_symlink_entries_are_ignored(storage_dir, phantom_files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        link = zipfile.ZipInfo("link.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("real.dcm", phantom_files[0].read_bytes())
    batch = ingest_zip(buffer.getvalue())
    assert reasons(batch)["link.dcm"] == "symbolic link entries are ignored"
    assert batch.results[1].status == Outcome.STORED


def test_a_zip_bomb_member_is_refused_without_inflating_it(storage_dir, settings):
    batch = ingest_zip(zip_of({"bomb.dcm": b"\0" * (20 * 1024 * 1024)}))  # ~1000:1
    assert batch.results[0].status == Outcome.REJECTED and "compression ratio" in batch.results[0].reason


def test_too_many_files_or_bytes_refuse_the_whole_archive(storage_dir, settings, phantom_files):
    settings.LUNGSCOPE_ZIP_MAX_FILES = 3
    batch = ingest_zip(zip_of({f"{i}.dcm": b"x" for i in range(4)}))
    assert len(batch.results) == 1 and "holds 4 files, more than the limit of 3" in batch.results[0].reason
    settings.LUNGSCOPE_ZIP_MAX_FILES, settings.LUNGSCOPE_ZIP_MAX_BYTES = 100, 1000
    batch = ingest_zip(zip_of({"a.dcm": phantom_files[0].read_bytes()}))
    assert "expands to" in batch.results[0].reason


def test_non_utf8_names_and_junk_are_handled(storage_dir, phantom_files):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        info = zipfile.ZipInfo("placeholder")
        info.filename = info.orig_filename = "sch\u00e4del.dcm"  # CP437-encodable: written without the UTF-8 flag
        zf.writestr(info, phantom_files[0].read_bytes())
        zf.writestr("__MACOSX/._schadel.dcm", b"resource fork")
        zf.writestr("notes.txt", b"hello")
    batch = ingest_zip(buffer.getvalue())
    assert [r.name for r in batch.results] == ["upload.zip/sch\u00e4del.dcm", "upload.zip/notes.txt"]
    assert batch.results[0].status == Outcome.STORED and "not a DICOM file" in batch.results[1].reason


def test_corrupt_or_non_zip_archives_are_rejected(storage_dir, phantom_files):
    assert "not a readable zip" in ingest_zip(b"PK\x03\x04 definitely not a zip").results[0].reason
    data = bytearray(zip_of({"a.dcm": phantom_files[0].read_bytes()}))
    data[60:200] = b"\xff" * 140  # damage the deflate stream of the member
    result = ingest_zip(bytes(data)).results[0]
    assert result.status == Outcome.REJECTED and result.reason
    assert_no_orphans(storage_dir)
