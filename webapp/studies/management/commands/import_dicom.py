"""``manage.py import_dicom PATH...``: bulk import from folders, zip archives and DICOMDIR file-sets."""
from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand
from tqdm import tqdm

from webapp.studies import archives
from webapp.studies.filesets import collect
from webapp.studies.ingest import IngestBatch
from webapp.studies.management.summary import print_summary, user_named


class Command(BaseCommand):
    help = "Import DICOM files, folders (walked recursively), zip archives and DICOMDIR file-sets."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--user", help="record this username as the uploader")

    def handle(self, *args, paths: list[Path], user: str | None, **options) -> None:
        sources = list(collect(paths))
        with IngestBatch(user_named(user)) as batch, tqdm(total=len(sources), unit="file") as bar:
            for source in sources:
                name = str(source.path)
                if source.refusal:
                    batch.reject(name, source.refusal)
                else:
                    with open(source.path, "rb") as file:
                        if archives.is_zip(file):
                            batch.add_archive(file, name)
                        else:
                            batch.add_file(file, name)
                bar.update(1)
                bar.set_postfix(batch.counts(), refresh=False)
        print_summary(self, batch, bar.format_dict["elapsed"])
