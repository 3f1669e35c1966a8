"""Fill an empty installation with phantom chest CTs, ingested and analysed like real ones.

The studies go in the way uploads do (``webapp.studies.ingest``) as DICOM files, so the demo exercises the same
checks, storage layout and analysis path as production; the phantom's class is kept as ``Study.source_label``
(ground truth to compare the AI against, not a diagnosis). A command of the analysis app, which sits above the
studies and registry apps it uses.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from training.phantom import PhantomStudy, generate_dataset, write_dicom_series
from webapp.analysis.models import AnalysisRun
from webapp.analysis.tasks import enqueue_analysis
from webapp.celery import app
from webapp.registry.services import ensure_default_model_version
from webapp.studies.ingest import Outcome, ingest_file
from webapp.studies.models import Study


class Command(BaseCommand):
    help = "Generate phantom chest CT studies (balanced NP/CAP/COVID), ingest them and queue their analysis."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--studies", type=int, default=6, help="how many studies (labels cycle NP, CAP, COVID)")
        parser.add_argument("--seed", type=int, default=2020, help="phantom seed: the same seed gives the same studies")
        parser.add_argument("--size", type=int, default=256, help="rows and columns of each slice")
        parser.add_argument("--slices", type=int, default=48, help="slices per study")
        parser.add_argument("--if-empty", action="store_true", help="do nothing when any study exists")
        parser.add_argument("--no-analyze", action="store_true", help="ingest only; analyse later")
        parser.add_argument("--sync", action="store_true",
                            help="analyse in this process instead of queueing for a worker")

    def handle(self, *args, studies: int, seed: int, size: int, slices: int, if_empty: bool, no_analyze: bool,
               sync: bool, **options) -> None:
        if studies < 1 or size < 64 or slices < 4:
            raise CommandError("need --studies >= 1, --size >= 64 and --slices >= 4")
        ensure_default_model_version()  # the shipped bundle becomes the registry's first, active version
        if if_empty and Study.objects.exists():
            self.stdout.write(f"{Study.objects.count()} studies exist; nothing to do (--if-empty)")
            return
        eager = app.conf.task_always_eager
        app.conf.task_always_eager = eager or sync  # eager: enqueue_analysis runs the task here, retries included
        try:
            for i, phantom in enumerate(generate_dataset(studies, seed, n_slices=slices, size=size), start=1):
                prefix = f"[{i}/{studies}] {phantom.label:5s} {phantom.patient_id}"
                study = self._ingest(phantom, prefix)
                if not no_analyze:
                    self._analyze(study, prefix, phantom.label, sync)
        finally:
            app.conf.task_always_eager = eager
        self.stdout.write(self.style.SUCCESS(f"{studies} phantom {'study' if studies == 1 else 'studies'} ready"))

    def _analyze(self, study: Study, prefix: str, truth: str, sync: bool) -> None:
        started = time.perf_counter()
        job = enqueue_analysis(study)
        if not sync:
            self.stdout.write(f"{prefix}: analysis queued (job {job.pk})")
            return
        run = AnalysisRun.objects.get(job=job)
        outcome = (f"AI says {run.label} ({run.probability:.0%})" if run.status == AnalysisRun.Status.SUCCEEDED
                   else f"analysis {run.status}: {run.error}")
        self.stdout.write(f"{prefix}: {outcome}, truth {truth} [{time.perf_counter() - started:.1f} s]")

    def _ingest(self, phantom: PhantomStudy, prefix: str) -> Study:
        """Write the phantom as a DICOM series and ingest every file; CommandError when any is refused."""
        with tempfile.TemporaryDirectory(prefix="lungscope-demo-") as tmp:
            paths = write_dicom_series(phantom, Path(tmp))
            results = []
            for path in paths:
                with open(path, "rb") as fh:
                    results.append(ingest_file(fh, path.name, source_label=phantom.label))
        refused = [r for r in results if not r.landed]
        if refused:
            raise CommandError(f"{prefix}: {len(refused)} files refused, e.g. {refused[0].name}: {refused[0].reason}")
        study = Study.objects.get(study_instance_uid=results[0].study_instance_uid)
        if not study.source_label:  # ingest labels only the studies it creates
            Study.objects.filter(pk=study.pk).update(source_label=phantom.label)
        stored = sum(r.status == Outcome.STORED for r in results)
        _, rows, cols = phantom.hu.shape
        self.stdout.write(f"{prefix}: {len(paths)} slices of {rows}x{cols} -> study {study.pk} "
                          f"({stored} stored, {len(results) - stored} already there)")
        return study
