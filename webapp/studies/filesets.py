"""What ``import_dicom`` reads from the paths it is given: folders, zip archives, DICOMDIR file-sets, files.

A DICOMDIR given directly is expanded to the files its records reference (``pydicom.fileset.FileSet``), which
is how media from a CD or a PACS export is meant to be read; inside a walked folder it is just another file
(rejected as "a file-set index"), because the walk reaches the referenced files anyway.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet

from .checks import MEDIA_STORAGE_DIRECTORY


@dataclass
class Source:
    """One file to ingest, or a path that could not be expanded (``refusal`` says why)."""

    path: Path
    refusal: str = ""


def is_dicomdir(path: Path) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            meta = pydicom.filereader.read_file_meta_info(path)
    except (InvalidDicomError, OSError, EOFError, ValueError):
        return False
    return meta.get("MediaStorageSOPClassUID") == MEDIA_STORAGE_DIRECTORY


def fileset_members(dicomdir: Path) -> list[Source]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fileset = FileSet(dicomdir)
            return [Source(Path(instance.path)) for instance in fileset]
    except Exception as exc:  # pydicom raises ValueError, KeyError, AttributeError... on malformed records
        return [Source(dicomdir, f"unreadable DICOMDIR: {exc}")]


def collect(paths: Iterable[Path]) -> Iterator[Source]:
    for path in paths:
        if path.is_dir():
            yield from (Source(p) for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink())
        elif not path.is_file():
            yield Source(path, "no such file or folder")
        elif is_dicomdir(path):
            yield from fileset_members(path)
        else:
            yield Source(path)
