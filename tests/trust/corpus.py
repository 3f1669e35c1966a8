"""Generators of bad input for every way in, and the one invariant every way in must keep.

A ``Case`` is one file as a client would send it: its name, its bytes and the outcomes it may end in. Plain cases
are single files (random bytes, DICOM cut short, hostile headers, the wrong modality, a second version of an
instance); archive cases are zips built to hurt (a bomb, traversal and absolute names, a thousand members, names
that are not UTF-8). ``assert_consistent`` is the check after each delivery: storage and database agree and
nothing is left half-made.
"""
from __future__ import annotations

import io
import random
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import MRImageStorage, UltrasoundImageStorage, generate_uid

STORED, DUPLICATE, REJECTED, CONFLICT = "stored", "duplicate", "rejected", "conflict"
LANDS = frozenset({STORED, DUPLICATE})
REFUSED = frozenset({REJECTED})


@dataclass(frozen=True)
class Case:
    """One file sent by a client, and what may become of it.

    ``reason`` is a fragment the refusal must contain, so a test notices when a file is refused for the wrong
    reason (a crash turned into a generic rejection would otherwise pass).
    """

    name: str
    data: bytes
    outcomes: frozenset[str]
    reason: str = ""


def dicom_bytes(ds: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def with_changes(data: bytes, **changes) -> bytes:
    """A copy of a DICOM file with elements changed and a fresh SOP Instance UID unless one is given."""
    ds = pydicom.dcmread(io.BytesIO(data))
    changes.setdefault("SOPInstanceUID", generate_uid())
    for keyword, value in changes.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "SOPClassUID" in changes:
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    return dicom_bytes(ds)


def random_bytes(seed: int = 0) -> list[Case]:
    """Noise of several sizes, also noise dressed up with a Part 10 preamble and ``DICM`` prefix."""
    rng = random.Random(seed)
    noise = [rng.randbytes(size) for size in (1, 128, 4096)]
    return [
        Case("empty.dcm", b"", REFUSED, "not a DICOM file"),
        *(Case(f"noise-{len(n)}.dcm", n, REFUSED, "DICOM") for n in noise),
        Case("dicm-then-noise.dcm", b"\0" * 128 + b"DICM" + rng.randbytes(2048), REFUSED, "DICOM"),
    ]


def truncated(data: bytes) -> list[Case]:
    """A real file cut inside the preamble, the file meta, the data set header and the pixel data."""
    offsets = (64, 132, 200, 400, len(data) // 2, len(data) - 1)
    return [Case(f"cut-at-{n}.dcm", data[:n], REFUSED, "") for n in offsets]


def hostile_headers(data: bytes) -> list[Case]:
    """Headers that must be refused before a pixel is decoded, and the wrong modalities."""
    return [
        Case("huge-65535.dcm", with_changes(data, Rows=65535, Columns=65535), REFUSED, "implausible image size"),
        Case("modality-mr.dcm", with_changes(data, Modality="MR", SOPClassUID=MRImageStorage), REFUSED,
             "not a CT image"),
        Case("modality-us.dcm", with_changes(data, Modality="US", SOPClassUID=UltrasoundImageStorage), REFUSED,
             "not a CT image"),
        Case("uid-traversal.dcm", with_changes(data, SOPInstanceUID="1.2.3/../../../evil"), REFUSED, "malformed"),
    ]


def duplicate_uid(data: bytes) -> list[Case]:
    """The same SOP Instance UID twice with different bytes: the first lands, the second is a conflict."""
    uid = generate_uid()
    return [Case("dup-first.dcm", with_changes(data, SOPInstanceUID=uid), LANDS),
            Case("dup-second.dcm", with_changes(data, SOPInstanceUID=uid, PatientComments="changed"),
                 frozenset({CONFLICT}), "different content")]


def plain_cases(data: bytes) -> list[Case]:
    """Every single-file case, built from one good CT file (which is itself included and must land)."""
    return [Case("good.dcm", data, LANDS), *random_bytes(), *truncated(data), *hostile_headers(data),
            *duplicate_uid(data)]


@dataclass(frozen=True)
class ArchiveCase:
    """A zip and what may become of each member (by member name), or of the whole archive when it is refused."""

    name: str
    data: bytes
    members: dict[str, Case]
    refused_whole: str = ""  # a fragment of the reason when the archive itself is refused


def zip_of(members: Iterable[tuple[str, bytes]], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, payload in members:
            zf.writestr(name, payload)
    return buffer.getvalue()


def zip_bomb() -> ArchiveCase:
    """A member inflating ~1000:1 (20 MB of zeros in ~20 KB), refused from the central directory alone."""
    bomb = Case("zeros.dcm", b"\0" * (20 * 1024 * 1024), REFUSED, "compression ratio")
    return ArchiveCase("bomb.zip", zip_of([(bomb.name, bomb.data)]), {bomb.name: bomb})


def zip_paths(data: bytes) -> ArchiveCase:
    """Traversal, absolute and drive-letter names refused one by one; the honest member beside them lands."""
    members = {
        "../../etc/evil.dcm": Case("../../etc/evil.dcm", data, REFUSED, "path traversal"),
        "/abs/evil.dcm": Case("/abs/evil.dcm", data, REFUSED, "absolute path"),
        "C:/windows/evil.dcm": Case("C:/windows/evil.dcm", data, REFUSED, "absolute path"),
        "fine/good.dcm": Case("fine/good.dcm", data, LANDS),
    }
    return ArchiveCase("paths.zip", zip_of((n, c.data) for n, c in members.items()), members)


def zip_many(data: bytes, count: int = 1000) -> ArchiveCase:
    """A thousand members, all the same instance: one is stored, the rest are duplicates; none is lost."""
    members = {f"many/{i:04d}.dcm": Case(f"many/{i:04d}.dcm", data, LANDS) for i in range(count)}
    return ArchiveCase("many.zip", zip_of((n, c.data) for n, c in members.items()), members)


def zip_raw_names(data: bytes) -> ArchiveCase:
    """Member names stored as raw CP437 and Latin-1 bytes without the UTF-8 flag (old Windows and Mac zippers).

    ``zipfile`` only writes ASCII or flagged UTF-8, so the names are written as same-length ASCII placeholders and
    the bytes patched in the local headers and the central directory (the CRC covers data, not names).
    """
    raw_names = {b"cp437-\x84\x94\x81.dcm": b"cp437-AOU.dcm",  # aou umlauts in CP437
                 b"latin1-\xe4\xf6\xfc.dcm": b"latin1-aou.dcm"}  # the same in Latin-1: not valid UTF-8
    archive = zip_of((placeholder.decode(), data) for placeholder in raw_names.values())
    for raw, placeholder in raw_names.items():
        assert len(raw) == len(placeholder) and archive.count(placeholder) == 2
        archive = archive.replace(placeholder, raw)
    members = {raw.decode("cp437"): Case(raw.decode("cp437"), data, LANDS) for raw in raw_names}
    return ArchiveCase("raw-names.zip", archive, members)


def zip_corrupt(data: bytes) -> ArchiveCase:
    """A zip whose member's deflate stream is damaged, and a file that only starts like a zip."""
    archive = bytearray(zip_of([("a.dcm", data)]))
    archive[60:200] = b"\xff" * 140
    return ArchiveCase("corrupt.zip", bytes(archive), {"a.dcm": Case("a.dcm", b"", REFUSED, "")})


def not_a_zip() -> ArchiveCase:
    return ArchiveCase("fake.zip", b"PK\x03\x04 definitely not a zip", {}, refused_whole="not a readable zip")


def archive_cases(data: bytes) -> list[ArchiveCase]:
    """Every archive case, built from one good CT file; each holds distinct instances from the others."""
    return [zip_bomb(), zip_paths(with_changes(data)), zip_many(with_changes(data)),
            zip_raw_names(with_changes(data)), zip_corrupt(with_changes(data)), not_a_zip()]


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels with almost no data behind it."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def image_cases(good_png: bytes) -> list[Case]:
    """For ``import_images``: a good PNG, a corrupt one, one cut short, a header bomb and a 0-byte JPEG."""
    return [
        Case("good.png", good_png, LANDS),
        Case("corrupt.png", b"\x89PNG\r\n\x1a\n" + random.Random(1).randbytes(512), REFUSED, "not a readable"),
        Case("cut.png", good_png[: len(good_png) // 2], REFUSED, "not a readable"),
        Case("bomb.png", png_with_size(65535, 65535), REFUSED, "not a readable"),
        Case("empty.jpg", b"", REFUSED, "not a readable"),
    ]


def assert_consistent(storage_dir: Path) -> None:
    """Storage and database agree after a delivery: every file under ``dicom/`` has its Instance row and every
    row its file, no Patient, Study or Series is left without instances, and no parked upload remains."""
    from webapp.studies.models import Instance, Patient, Series, Study

    files = {str(p.relative_to(storage_dir)) for p in (storage_dir / "dicom").rglob("*") if p.is_file()}
    rows = set(Instance.objects.values_list("file", flat=True))
    leftovers = [str(p.relative_to(storage_dir)) for p in (storage_dir / "uploads").rglob("*") if p.is_file()]
    problems = {
        "files without an Instance row": sorted(files - rows),
        "Instance rows without a file": sorted(rows - files),
        "series without instances": list(Series.objects.filter(instances__isnull=True).values_list("pk", flat=True)),
        "studies without series": list(Study.objects.filter(series__isnull=True).values_list("pk", flat=True)),
        "patients without studies": list(Patient.objects.filter(studies__isnull=True).values_list("pk", flat=True)),
        "parked uploads left behind": leftovers,
    }
    assert not any(problems.values()), {k: v for k, v in problems.items() if v}
