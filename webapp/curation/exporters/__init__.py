"""Export writers. Each format is a module with ``write(items, sink, context) -> dict`` (a summary).

Writers never hold a whole export in memory: they write one member at a time into a ``Sink``, which is either a
zip file on disk (the downloadable export) or a plain folder (the training task reads the training-ready layout
directly). Ids pass through ``ExportContext`` so de-identification is applied the same way in every format.
"""
from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import pydicom
from django.core.files.storage import default_storage

from inference.io import Volume, load_study
from webapp.storage import local_paths
from webapp.studies.models import Instance

from ..deid import Deidentifier
from ..models import DatasetItem

#: Decision label -> the training class key (contract: NP, CAP, COVID); indeterminate studies have no class.
CLASS_KEYS = {"np": "NP", "cap": "CAP", "covid": "COVID"}


class ExportError(RuntimeError):
    """An export that cannot be produced at all (a single unreadable study is skipped and reported instead)."""


class Sink(Protocol):
    def open(self, name: str) -> Any: ...  # context manager yielding a writable binary file

    def write_bytes(self, name: str, data: bytes) -> None: ...


class ZipSink:
    """Members streamed into an open ``zipfile.ZipFile`` (ZIP64, deflated), one at a time."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.members = 0

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        with self.archive.open(name, "w", force_zip64=True) as fh:
            yield fh
        self.members += 1

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open(name) as fh:
            fh.write(data)


class DirSink:
    """Members written as files under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.members = 0

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            yield fh
        self.members += 1

    def write_bytes(self, name: str, data: bytes) -> None:
        with self.open(name) as fh:
            fh.write(data)


@dataclass
class ExportContext:
    """What every writer shares: the de-identifier (or None), a progress callback, and skipped-study reasons."""

    deid: Deidentifier | None
    progress: Callable[[float, str], None] = lambda fraction, message: None
    skipped: dict[str, str] = field(default_factory=dict)  # output study id -> reason

    def study_id(self, item: DatasetItem) -> str:
        return self.deid.uid(item.study_instance_uid) if self.deid else item.study_instance_uid

    def patient_id(self, item: DatasetItem) -> str:
        return self.deid.patient(item.patient_id) if self.deid else item.patient_id

    def sop_uid(self, uid: str) -> str:
        return self.deid.uid(uid) if self.deid else uid

    def load_volume(self, item: DatasetItem, study_id: str) -> Volume | None:
        """The item's HU volume, or None with the reason recorded under ``skipped``: one unreadable study is
        reported, it does not stop the export."""
        try:
            return load_item_volume(item)
        except (ExportError, ValueError) as exc:
            self.skipped[study_id] = str(exc)
            return None


def frozen_instances(item: DatasetItem) -> list[Instance]:
    """The item's instances in the frozen spatial order; ExportError when one was deleted since freezing."""
    by_uid = {i.sop_instance_uid: i for i in Instance.objects.filter(sop_instance_uid__in=item.sop_instance_uids)}
    missing = [uid for uid in item.sop_instance_uids if uid not in by_uid]
    if missing or not item.sop_instance_uids:
        raise ExportError(f"{len(missing) or 'all'} frozen image(s) of the study are no longer stored")
    return [by_uid[uid] for uid in item.sop_instance_uids]


@contextmanager
def local_files(instances: list[Instance]) -> Iterator[list[Path]]:
    """Local paths of the instances' files (temporary copies for object storage)."""
    with local_paths([i.file.name for i in instances], prefix="lungscope-export-") as paths:
        yield paths


def load_item_volume(item: DatasetItem) -> Volume:
    """The frozen series as a HU volume; ExportError when it is not CT in HU or its slices moved."""
    instances = frozen_instances(item)
    with local_files(instances) as paths:
        volume = load_study(paths)
    if not volume.is_hu:
        raise ExportError("the series has no HU values (not a CT image series)")
    if set(volume.sop_instance_uids) != set(item.sop_instance_uids):
        raise ExportError("the stored series does not hold exactly the frozen slices")
    return volume


def read_dataset(instance: Instance, pixels: bool = True) -> pydicom.Dataset:
    with default_storage.open(instance.file.name, "rb") as fh:
        return pydicom.dcmread(fh, stop_before_pixels=not pixels)


def boxes_by_slice(item: DatasetItem, uids: list[str]) -> dict[int, list[dict[str, Any]]]:
    """The item's surviving boxes grouped by slice index, for slices in the order ``uids`` (the volume's)."""
    index = {uid: n for n, uid in enumerate(uids)}
    out: dict[int, list[dict[str, Any]]] = {}
    for box in item.boxes:
        out.setdefault(index[box["sop_instance_uid"]], []).append(box)
    return out


def writer(fmt: str):
    """The module that writes format ``fmt``."""
    from . import coco, csv, sr, training_ready

    return {"training_ready": training_ready, "coco": coco, "sr": sr, "csv": csv}[fmt]
