"""The bad input corpus through every way in: the upload API (plain files in the request, zips by a live worker),
STOW-RS, ``import_dicom`` and ``import_images``, plus every file of ``../shared/data/dicom-variants``.

Each input gets a 4xx with a reason, a per-file rejected result with a reason, or lands whole; never a 5xx; and
after each delivery ``corpus.assert_consistent`` finds storage and database in step. The platform tests pin the
individual ingest rules; this sweep checks that no way in loses a case the others handle. Each way in receives the
whole corpus in one delivery and every wrong outcome is collected, so a failure lists all of them at once.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from corpus import (
    LANDS,
    REFUSED,
    ArchiveCase,
    Case,
    archive_cases,
    assert_consistent,
    image_cases,
    plain_cases,
    zip_of,
)
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from factories import client_for, make_user, wait_for_job
from PIL import Image

from webapp.jobs.models import Job
from webapp.studies.models import Instance
from webapp.studies.tasks import ingest_upload

pytestmark = pytest.mark.django_db

NON_CT_MODALITIES = {"MR", "US", "CR", "NM", "OT"}
BOUNDARY = "c0rpu5"


@pytest.fixture(scope="module")
def ct_file(tmp_path_factory) -> bytes:
    """One good CT slice (a 64 x 64 phantom) every generated case is made from."""
    from training.phantom import generate_study, write_dicom_series

    out = tmp_path_factory.mktemp("corpus-phantom")
    return write_dicom_series(generate_study(11, "CAP", size=64, n_slices=2), out)[0].read_bytes()


@pytest.fixture
def uploader(db):
    return make_user("corpus-uploader", "clinician")


def judge(cases: Iterable[Case], results: dict[str, tuple[str, str]], prefix: str = "") -> list[str]:
    """What went wrong for each case: a missing result, an outcome it may not have, a refusal without the
    expected reason."""
    problems = []
    for case in cases:
        got = results.get(prefix + case.name)
        if got is None:
            problems.append(f"{prefix}{case.name}: no result")
            continue
        status, reason = got
        if status not in case.outcomes:
            problems.append(f"{prefix}{case.name}: {status} ({reason}), expected one of {sorted(case.outcomes)}")
        elif status not in LANDS and not (reason and case.reason in reason):
            problems.append(f"{prefix}{case.name}: refused with reason {reason!r}, expected {case.reason!r}")
    return problems


def by_name(rows: Iterable[dict]) -> dict[str, tuple[str, str]]:
    return {row["name"]: (row["status"], row["reason"]) for row in rows}


def judge_archive(archive: ArchiveCase, rows: list[dict], prefix: str) -> list[str]:
    results = by_name(rows)
    if archive.refused_whole:
        status, reason = results.get(prefix.rstrip("/"), ("missing", ""))
        return [] if status == "rejected" and archive.refused_whole in reason else \
            [f"{archive.name}: {status} ({reason}), expected the whole archive refused"]
    return judge(archive.members.values(), results, prefix)


def variant_manifest(shared_data: Path) -> dict[str, dict]:
    root = shared_data / "dicom-variants"
    return {row["path"]: row for row in csv.DictReader((root / "manifest.csv").open())}


def judge_variants(manifest: dict[str, dict], results: dict[str, tuple[str, str]], prefix: str) -> list[str]:
    """Every variant has a result; refusals carry a reason; no non-CT modality is stored."""
    problems = []
    for path, row in manifest.items():
        status, reason = results.get(prefix + path, ("missing", ""))
        if status == "missing" or (status not in LANDS and not reason):
            problems.append(f"{path}: {status} without a reason")
        if row["modality"] in NON_CT_MODALITIES and status in LANDS:
            problems.append(f"{path}: a {row['modality']} file landed")
    return problems


def test_upload_api_plain_files(uploader, storage_dir, ct_file):
    cases = plain_cases(ct_file)
    response = client_for(uploader).post(
        "/api/uploads/", {"files": [SimpleUploadedFile(c.name, c.data) for c in cases]}, format="multipart")
    assert response.status_code == 201, response.content[:500]
    assert judge(cases, by_name(response.json()["results"])) == []
    assert_consistent(storage_dir)


def multipart_form(filename: bytes, data: bytes) -> bytes:
    """A form-data body by hand: test clients encode file names themselves and cannot send arbitrary bytes."""
    return (f"--{BOUNDARY}\r\n".encode() + b'Content-Disposition: form-data; name="files"; filename="' + filename
            + b'"\r\nContent-Type: application/octet-stream\r\n\r\n' + data + f"\r\n--{BOUNDARY}--\r\n".encode())


@pytest.mark.parametrize("filename", [
    b"\xff\xfe\xfa.dcm", b"latin1-\xe4\xf6\xfc.dcm", b"..", b"../../etc/passwd", b"C:\\x\\..\\y.dcm",
    b"nul\x00byte.dcm", b"\xe2\x80\xaertl.dcm", b"long-" + b"n" * 1000 + b".dcm", b"",
], ids=["invalid-utf8", "latin1", "dotdot", "traversal", "windows", "nul", "rtl-override", "overlong", "empty"])
def test_upload_api_odd_multipart_file_names(uploader, storage_dir, ct_file, filename):
    """The name is only a label: the file lands under any name, or the request is a 400 with a reason."""
    client = client_for(uploader)
    response = client.post("/api/uploads/", multipart_form(filename, ct_file),
                           content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert response.status_code in (201, 400), response.content[:500]
    body = response.json()
    if response.status_code == 201:
        assert body["results"][0]["status"] == "stored"
    else:
        assert body, "a 400 without a reason"
    assert_consistent(storage_dir)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_upload_api_zips_through_a_live_worker(start_worker, storage_dir, ct_file, uploader):
    """Every archive case in one request, one job each, run by one real worker; the parked zips are removed."""
    start_worker(queues="default")
    archives = archive_cases(ct_file)
    overlong = ArchiveCase("z" * 300 + ".zip", zip_of([("a.dcm", ct_file)]), {"a.dcm": Case("a.dcm", ct_file, LANDS)})
    archives.append(overlong)  # longer than a file system allows in one path component
    response = client_for(uploader).post(
        "/api/uploads/", {"files": [SimpleUploadedFile(a.name, a.data) for a in archives]}, format="multipart")
    assert response.status_code == 202, response.content[:500]
    jobs = [wait_for_job(Job.objects.get(pk=job["id"]), timeout=240) for job in response.json()["jobs"]]
    assert len(jobs) == len(archives)
    problems = []
    for archive, job in zip(archives, jobs, strict=True):
        if job.status != Job.Status.SUCCEEDED:
            problems.append(f"{archive.name[:40]}: job {job.status} {job.error}")
            continue
        problems += judge_archive(archive, job.result["results"], f"{job.params['name']}/")
    assert problems == []
    many = next(job for archive, job in zip(archives, jobs, strict=True) if archive.name == "many.zip")
    assert many.result["counts"] == {"stored": 1, "duplicate": 999, "rejected": 0, "conflict": 0}
    assert_consistent(storage_dir)


def stow(client, body: bytes, content_type: str = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'):
    return client.generic("POST", "/dicomweb/studies", body, content_type=content_type,
                          HTTP_ACCEPT="application/dicom+json")


def related_body(parts: Iterable[bytes]) -> bytes:
    body = b"".join(f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + p + b"\r\n" for p in parts)
    return body + f"--{BOUNDARY}--\r\n".encode()


def stow_results(response) -> dict[str, tuple[str, str]]:
    """Per-part outcomes from a DICOM JSON store response: failures name their part in ErrorComment."""
    body = json.loads(response.content)
    failed = {}
    for item in body.get("00081198", {}).get("Value", []):
        comment = item["00000902"]["Value"][0]
        part, _, reason = comment.partition(": ")
        failed[part] = ("conflict" if item["00081197"]["Value"][0] == 0x0111 else "rejected", reason)
    stored = [item["00081155"]["Value"][0] for item in body.get("00081199", {}).get("Value", [])]
    return failed | {"stored": ("stored", ",".join(stored))}


def test_stow_rs_parts(uploader, storage_dir, ct_file):
    cases = plain_cases(ct_file)
    response = stow(client_for(uploader), related_body(c.data for c in cases))
    assert response.status_code == 202, response.content[:500]
    results = stow_results(response)
    # ErrorComment is cut at 64 characters, so only that a reason is there is checked, not its wording
    refused = [Case(f"part {n}", c.data, c.outcomes) for n, c in enumerate(cases, start=1) if not c.outcomes & LANDS]
    assert judge(refused, results) == []
    landed = [n for n, c in enumerate(cases, start=1) if c.outcomes & LANDS]
    assert not {f"part {n}" for n in landed} & results.keys()
    assert len(results["stored"][1].split(",")) == len(landed)
    assert_consistent(storage_dir)


@pytest.mark.parametrize(("content_type", "body", "code"), [
    ("application/dicom", b"\0" * 200, 415),
    ("multipart/related; type=\"application/dicom\"", b"--x\r\n\r\n", 400),
    (f"multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}", b"no boundary in here", 400),
    (f"multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}", f"--{BOUNDARY}\r\nContent-Type: "
     "application/dicom\r\n\r\nDICM cut without the closing boundary".encode(), 400),
    (f"multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}", b"", 400),
    ("multipart/related; type=\"application/dicom\"; boundary=\"\xff\xfe\"", b"--\xfe\xff\r\n", 400),
], ids=["not-multipart", "no-boundary", "boundary-absent", "unterminated", "empty", "odd-boundary"])
def test_stow_rs_malformed_bodies(uploader, storage_dir, content_type, body, code):
    response = stow(client_for(uploader), body, content_type)
    assert response.status_code == code, response.content[:500]
    assert json.loads(response.content), "a refusal without a reason"
    assert_consistent(storage_dir)


def run_command(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_import_dicom_folder_and_zips(storage_dir, ct_file, tmp_path):
    """The command reports counts and grouped reasons: every case must be counted, every landing case be stored
    with its bytes, and every expected reason be named."""
    cases, archives = plain_cases(ct_file), archive_cases(ct_file)
    folder = tmp_path / "import"
    folder.mkdir()
    for case in cases:
        (folder / case.name).write_bytes(case.data)
    for archive in archives:
        (folder / archive.name).write_bytes(archive.data)
    summary = run_command("import_dicom", str(folder))
    counts = dict((status, int(n)) for n, status in (part.split()[:2] for part in summary.splitlines()[0]
                                                      .split(" in ")[0].split(", ")))
    members = [c for a in archives for c in a.members.values()]
    expected_total = len(cases) + len(members) + sum(1 for a in archives if a.refused_whole)
    assert sum(counts.values()) == expected_total, summary
    assert counts["conflict"] == sum(1 for c in cases + members if c.outcomes == {"conflict"}), summary
    for case in cases + members:
        if case.reason:
            assert case.reason in summary, (case.name, summary)
    stored = set(Instance.objects.values_list("sha256", flat=True))
    missing = [c.name for c in cases + members if c.outcomes <= LANDS and hashlib.sha256(c.data).hexdigest()
               not in stored]
    assert missing == []
    assert_consistent(storage_dir)


def test_import_images_refuses_broken_images(storage_dir, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    buffer = io.BytesIO()
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8), (48, 1))).save(buffer, format="PNG")
    cases = image_cases(buffer.getvalue())
    for case in cases:
        (folder / case.name).write_bytes(case.data)
    summary = run_command("import_images", "--label", "CAP", str(folder))
    refused = [c for c in cases if c.outcomes == REFUSED]
    assert summary.startswith(f"1 stored, 0 duplicate, {len(refused)} rejected, 0 conflict"), summary
    assert summary.count("x not a readable") >= 1, summary
    assert_consistent(storage_dir)


def test_dicom_variants_through_import_dicom_stow_and_an_ingest_job(shared_data, storage_dir, uploader):
    """The shared variants three more ways (the upload API's plain path is tests/platform/test_upload_api.py):
    ``import_dicom`` over the folder, STOW-RS of every file, and the ingest job over a zip of them."""
    root = shared_data / "dicom-variants"
    manifest = variant_manifest(shared_data)
    summary = run_command("import_dicom", str(root))
    assert " stored, " in summary and "not a CT image" in summary, summary
    assert_consistent(storage_dir)

    paths = list(manifest)
    response = stow(client_for(uploader), related_body((root / p).read_bytes() for p in paths))
    assert response.status_code in (200, 202), response.content[:500]
    results = stow_results(response)
    failed_parts = {int(k.split()[1]) for k in results if k.startswith("part ")}
    problems = [f"{paths[n - 1]}: refused without a reason" for n in failed_parts if not results[f"part {n}"][1]]
    problems += [f"{paths[n - 1]}: a {manifest[paths[n - 1]]['modality']} file stored" for n in
                 range(1, len(paths) + 1) if n not in failed_parts
                 and manifest[paths[n - 1]]["modality"] in NON_CT_MODALITIES]
    assert problems == []
    assert_consistent(storage_dir)

    parked = default_storage.save("uploads/corpus/variants.zip",
                                  ContentFile(zip_of((p, (root / p).read_bytes()) for p in paths)))
    job = Job.objects.create(kind=Job.Kind.INGEST, params={"upload": parked, "name": "variants.zip"},
                             created_by=uploader)
    ingest_upload.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.status == Job.Status.SUCCEEDED, job.error
    assert judge_variants(manifest, by_name(job.result["results"]), "variants.zip/") == []
    assert_consistent(storage_dir)
