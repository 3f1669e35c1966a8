"""``manage.py sweep_orphans``: delete DICOM files in storage that no Instance row names.

Ingest writes a file before its row commits (``ingest.IngestBatch``), so a process killed in between leaves the
file behind without a row: never an instance, but space taken. Files younger than ``--older-than`` minutes are
left alone, since they may belong to a delivery still in progress.
"""
from __future__ import annotations

import datetime as dt

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand
from django.utils import timezone

from webapp.studies.models import Instance

ROOT = "dicom"


def storage_files(folder: str):
    """Every file under ``folder`` in the storage backend, as storage names."""
    if not default_storage.exists(folder):
        return
    folders, files = default_storage.listdir(folder)
    for name in files:
        yield f"{folder}/{name}"
    for sub in folders:
        yield from storage_files(f"{folder}/{sub}")


class Command(BaseCommand):
    help = "Delete stored DICOM files without an Instance row (left by a crash mid-ingest)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--older-than", type=float, default=60.0, metavar="MINUTES",
                            help="only files last modified this many minutes ago or earlier (default 60)")
        parser.add_argument("--dry-run", action="store_true", help="list them, delete nothing")

    def handle(self, *args, older_than: float, dry_run: bool, **options) -> None:
        cutoff = timezone.now() - dt.timedelta(minutes=older_than)
        known = set(Instance.objects.values_list("file", flat=True))
        orphans = [name for name in storage_files(ROOT)
                   if name not in known and default_storage.get_modified_time(name) <= cutoff]
        for name in orphans:
            self.stdout.write(name)
            if not dry_run:
                default_storage.delete(name)
        self.stdout.write(f"{len(orphans)} orphan file(s) {'found' if dry_run else 'deleted'}")
