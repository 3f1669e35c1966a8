"""``manage.py import_dicom PATH...``: bulk import from folders, zip archives and DICOMDIR file-sets."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from django.core.management.base import BaseCommand
from tqdm import tqdm

from inference.read_warnings import ReadWarnings, collected
from webapp.studies import archives
from webapp.studies.filesets import collect
from webapp.studies.ingest import IngestBatch
from webapp.studies.management.summary import print_summary, user_named


class Command(BaseCommand):
    help = ("Import DICOM files, folders (walked recursively), zip archives and DICOMDIR file-sets. Warnings about "
            "odd headers are summed up in one line per study; --verbose lists them.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", type=Path)
        parser.add_argument("--user", help="record this username as the uploader")
        parser.add_argument("--verbose", action="store_true", help="list every warning raised while reading files")

    def handle(self, *args, paths: list[Path], user: str | None, verbose: bool, **options) -> None:
        sources = list(collect(paths))
        warned: dict[str, ReadWarnings] = defaultdict(ReadWarnings)  # study (or source, when unknown) -> warnings
        with IngestBatch(user_named(user)) as batch, tqdm(total=len(sources), unit="file") as bar:
            for source in sources:
                name = str(source.path)
                if source.refusal:
                    batch.reject(name, source.refusal)
                else:
                    seen, before = ReadWarnings(), len(batch.results)
                    with open(source.path, "rb") as file, collected(seen):
                        if archives.is_zip(file):
                            batch.add_archive(file, name)
                        else:
                            batch.add_file(file, name)
                    studies = {r.study_instance_uid for r in batch.results[before:]} - {""}
                    warned[f"study {studies.pop()}" if len(studies) == 1 else name].messages.extend(seen.messages)
                bar.update(1)
                bar.set_postfix(batch.counts(), refresh=False)
        for study, seen in warned.items():
            if seen:
                self.stderr.write(f"warning: {seen.summary(study)}")
                if verbose:
                    self.stderr.write("\n".join(seen.details()))
        print_summary(self, batch, bar.format_dict["elapsed"])
