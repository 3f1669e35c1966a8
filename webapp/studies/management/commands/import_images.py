"""``manage.py import_images --label LABEL DIR``: 2D PNG/JPEG research slices as one-slice Secondary Capture
studies carrying ``LABEL`` in ``Study.source_label`` (a research label, not a diagnosis)."""
from __future__ import annotations

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from webapp.studies.ingest import IngestBatch
from webapp.studies.management.summary import print_summary, user_named
from webapp.studies.secondary_capture import IMAGE_SUFFIXES, ImageError, image_to_dicom


class Command(BaseCommand):
    help = "Import PNG/JPEG slices (already windowed, not HU) as Secondary Capture studies with a label."

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--label", required=True, help="research label stored in Study.source_label")
        parser.add_argument("--user", help="record this username as the uploader")

    def handle(self, *args, directory: Path, label: str, user: str | None, **options) -> None:
        if not directory.is_dir():
            raise CommandError(f"{directory} is not a folder")
        images = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise CommandError(f"no .png/.jpg/.jpeg files under {directory}")
        started = time.monotonic()
        with IngestBatch(user_named(user), allow_secondary_capture=True, source_label=label[:32]) as batch:
            for path in tqdm(images, unit="image"):
                try:
                    batch.add_file(image_to_dicom(path, label), str(path))
                except ImageError as exc:
                    batch.reject(str(path), str(exc))
        print_summary(self, batch, time.monotonic() - started)
