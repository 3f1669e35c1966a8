"""Creating exports and writing them: a Job on the ``default`` queue streams one zip to disk, then to storage.

The zip is written member by member into a temporary file next to the storage (never in the web process, never
whole in memory) and handed to the storage backend at the end; on local disk that is a rename. A redelivered task
rebuilds the zip from the frozen DatasetVersion, so the result is the same whichever attempt finishes.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from webapp.jobs.models import Job

from .deid import Deidentifier
from .exporters import DirSink, ExportContext, ZipSink, writer
from .models import DatasetVersion, Export


class _LocalFile(File):
    """A finished temp file; ``temporary_file_path`` lets FileSystemStorage move it instead of copying."""

    def temporary_file_path(self) -> str:
        return self.name


def create_export(version: DatasetVersion, fmt: str, deidentify: bool = True, user=None) -> Export:
    """An Export row with its queued Job; the task is sent once the rows are committed."""
    from .tasks import run_export

    with transaction.atomic():
        job = Job.objects.create(kind=Job.Kind.EXPORT, created_by=user,
                                 params={"dataset_version": version.pk, "format": fmt, "deidentify": deidentify})
        export = Export.objects.create(dataset_version=version, format=fmt, deidentify=deidentify, job=job,
                                       created_by=user)
        transaction.on_commit(lambda: run_export.delay(export.pk))
    return export


def _scratch_dir() -> str:
    """Local scratch beside the storage when it is on disk (same filesystem: the final move is a rename)."""
    try:
        path = Path(default_storage.path("tmp"))
    except NotImplementedError:
        return tempfile.gettempdir()
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def _manifest(export: Export, summary: dict[str, Any]) -> bytes:
    version = export.dataset_version
    return json.dumps({
        "schema": "lungscope.export/1", "format": export.format, "deidentified": export.deidentify,
        "dataset_version": {"id": version.pk, "name": version.name, "fingerprint": version.fingerprint},
        "exported_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **summary,
    }, indent=2).encode()


def build_export(export: Export, progress: Callable[[float, str], None]) -> None:
    """Write the export's zip and store it on the row (file, size, sha256, summary)."""
    items = list(export.dataset_version.items.all())
    context = ExportContext(deid=Deidentifier() if export.deidentify else None, progress=progress)
    fd, tmp_path = tempfile.mkstemp(suffix=".zip", dir=_scratch_dir())
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp_path, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
            sink = ZipSink(archive)
            summary = writer(export.format).write(items, sink, context)
            summary = {**summary, "skipped": context.skipped}
            sink.write_bytes("manifest.json", _manifest(export, summary))
        digest = hashlib.sha256()
        with open(tmp_path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        name = f"exports/{export.pk}/{export.download_name}"
        if default_storage.exists(name):
            default_storage.delete(name)
        with open(tmp_path, "rb") as fh:
            stored = default_storage.save(name, _LocalFile(fh, name=tmp_path))
    finally:
        if os.path.exists(tmp_path):
            os.unlink(tmp_path)
    export.file.name = stored
    export.size = default_storage.size(stored)
    export.sha256 = digest.hexdigest()
    export.summary = {**summary, "members": sink.members}
    export.save(update_fields=["file", "size", "sha256", "summary"])


def write_training_ready(version: DatasetVersion, out_dir: Path, deidentify: bool = True,
                         progress: Callable[[float, str], None] = lambda f, m: None) -> dict[str, Any]:
    """The training-ready layout as plain files under ``out_dir`` (what the training task feeds ``retrain``)."""
    context = ExportContext(deid=Deidentifier() if deidentify else None, progress=progress)
    summary = writer("training_ready").write(list(version.items.all()), DirSink(out_dir), context)
    return {**summary, "skipped": context.skipped}
