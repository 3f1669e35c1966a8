"""Reading zip archives of DICOM files without trusting them.

Limits come from settings (``LUNGSCOPE_ZIP_MAX_FILES``, ``LUNGSCOPE_ZIP_MAX_BYTES``, ``LUNGSCOPE_ZIP_MAX_RATIO``)
and are checked against the central directory before a byte is inflated. Each member is then judged on its own:
absolute paths and ``..`` are refused (names are only labels here, nothing is extracted to a path, but a
traversal attempt says something about the archive and the user should see it), symbolic links are ignored,
a member whose compression ratio betrays a zip bomb is refused, and names that are not UTF-8 are decoded as the
zip standard's CP437. Members are streamed one at a time, never the whole archive in memory; ``zipfile`` stops
inflating at the declared size, so a member that lies about its size cannot grow past the checked limit.
"""
from __future__ import annotations

import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from django.conf import settings

UTF8_NAME_FLAG = 0x800
IGNORED_PREFIXES = ("__MACOSX/",)  # resource forks macOS adds beside every file


class ArchiveError(Exception):
    """The archive, or one member, cannot be read safely; the message says why."""


@dataclass
class Entry:
    name: str
    info: zipfile.ZipInfo
    refusal: str = ""  # why this member is skipped, or '' to ingest it


def is_zip(file: BinaryIO) -> bool:
    """Sniff the local-file-header signature without moving the stream."""
    position = file.tell()
    try:
        return file.read(4) in (b"PK\x03\x04", b"PK\x05\x06")
    finally:
        file.seek(position)


def decoded_name(info: zipfile.ZipInfo) -> str:
    """The member name as the creator meant it: UTF-8 when flagged or valid, else CP437 as the standard says."""
    if info.flag_bits & UTF8_NAME_FLAG:
        return info.filename
    raw = info.orig_filename.encode("cp437", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return info.filename


def refusal_for(name: str, info: zipfile.ZipInfo) -> str:
    """Why a member must not be ingested, or ''."""
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link entries are ignored"
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return "absolute path in archive entry refused"
    if ".." in PurePosixPath(normalized).parts:
        return "path traversal ('..') in archive entry refused"
    if info.flag_bits & 0x1:
        return "encrypted archive entry"
    ratio = info.file_size / max(info.compress_size, 1)
    if ratio > settings.LUNGSCOPE_ZIP_MAX_RATIO:
        return f"compression ratio {ratio:.0f}:1 exceeds {settings.LUNGSCOPE_ZIP_MAX_RATIO}:1 (zip bomb?)"
    return ""


class Archive:
    """An opened zip with its members listed and judged; ``read`` streams one member."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        members = [info for info in zf.infolist() if not info.is_dir()]
        members = [info for info in members if not decoded_name(info).startswith(IGNORED_PREFIXES)]
        if len(members) > settings.LUNGSCOPE_ZIP_MAX_FILES:
            raise ArchiveError(f"archive holds {len(members)} files, more than the limit of "
                               f"{settings.LUNGSCOPE_ZIP_MAX_FILES}")
        total = sum(info.file_size for info in members)
        if total > settings.LUNGSCOPE_ZIP_MAX_BYTES:
            raise ArchiveError(f"archive expands to {total} bytes, more than the limit of "
                               f"{settings.LUNGSCOPE_ZIP_MAX_BYTES}")
        self.entries = [Entry(decoded_name(info), info, refusal_for(decoded_name(info), info)) for info in members]

    def read(self, entry: Entry) -> BinaryIO:
        """A stream of the member's bytes, fully read and CRC-checked before it is handed on."""
        try:
            return _CheckedMember(self.zf.open(entry.info))
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError) as exc:
            raise ArchiveError(f"corrupt archive entry: {exc}") from None


class _CheckedMember:
    """Wraps a member stream so that inflate and CRC errors surface as ``ArchiveError``."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            return self.stream.read(size)
        except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
            raise ArchiveError(f"corrupt archive entry: {exc}") from None


@contextmanager
def open_zip(file: BinaryIO) -> Iterator[Archive]:
    try:
        zf = zipfile.ZipFile(file)
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError) as exc:
        raise ArchiveError(f"not a readable zip archive: {exc}") from None
    with zf:
        yield Archive(zf)
