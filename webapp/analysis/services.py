"""Running an analysis for the web app: series files -> ``inference.pipeline`` -> runs, slices, maps, findings, boxes.

The Celery task (``tasks.py``) decides about retries; this module does the work and keeps it idempotent: results of
a run are written in one transaction that first removes anything an earlier attempt of the same run left, and map
files have fixed names that a retry overwrites.

``inference`` (torch, scipy) is imported inside the functions that run a model or read pixels, not at module level:
the URL conf reaches this module through the views, and a web process should start without the ML stack.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from webapp.registry.models import ModelVersion
from webapp.registry.bundle_store import local_bundle
from webapp.registry.services import active_bundle, loaded_bundle
from webapp.storage import local_paths
from webapp.studies.models import Series, Study

from . import maps
from .columns import refresh_ai_columns
from .models import AnalysisRun, Finding, SliceResult
from .signals import results_stored

if TYPE_CHECKING:
    from inference.bundle import Bundle
    from inference.io import Volume

Progress = Callable[[float, str], None]  # (percent, message), e.g. Job.report


class AnalysisError(Exception):
    """A study that cannot be analysed as it is (no CT series, unreadable pixels, unusable model): no retry helps."""


class MapsUnavailable(Exception):
    """Maps of a slice cannot be computed any more (the run's model is gone or changed)."""


# --------------------------------------------------------------------------- inputs: series, files, model

def has_ct_images(study: Study) -> bool:
    return study.series.filter(modality="CT", instances__isnull=False).exists()


def ct_series(study: Study) -> Series:
    """The CT series with the most instances: the thin-slice volume, not a scout or a dose report."""
    series = (study.series.filter(modality="CT").annotate(n=Count("instances")).filter(n__gt=0)
              .order_by("-n", "pk").first())
    if series is None:
        raise AnalysisError(f"study {study.study_instance_uid} has no CT series to analyse")
    return series


@contextmanager
def local_files(series: Series) -> Iterator[list[Path]]:
    """Local paths of the series' files: the storage's own paths, or copies in a temp dir for remote storage.

    A file missing from storage raises FileNotFoundError, which the task treats as transient (object storage that
    has not caught up, a mount that is away) and retries.
    """
    names = list(series.instances.order_by("pk").values_list("file", flat=True))
    missing = [name for name in names if not default_storage.exists(name)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(names)} files of series {series.series_instance_uid} are "
                                f"missing from storage (first: {missing[0]})")
    with local_paths(names, prefix="lungscope-series-") as paths:
        yield paths


def load_volume(series: Series) -> Volume:
    from inference.io import LoadError, load_study

    with local_files(series) as paths:
        try:
            return load_study(paths)
        except LoadError as exc:
            raise AnalysisError(f"series {series.series_instance_uid} cannot be read: {exc}") from exc


def bundle_at(path: str, expected_sha256: str = "") -> Bundle:
    """A registered bundle, loaded once per process (``registry.services.loaded_bundle``); BundleError when it is
    gone or its weights differ from ``expected_sha256``."""
    from inference.bundle import WEIGHTS_FILE, BundleError, file_sha256

    folder = local_bundle(path)
    sha256 = file_sha256(folder / WEIGHTS_FILE) if (folder / WEIGHTS_FILE).is_file() else ""
    if expected_sha256 and sha256 != expected_sha256:
        raise BundleError(f"the weights in {folder} are not the registered ones (sha256 {sha256[:12] or 'missing'} "
                          f"instead of {expected_sha256[:12]})")
    return loaded_bundle(folder, sha256)


def run_bundle(run: AnalysisRun) -> Bundle:
    """The model a run asked for: its registered version, else whatever is active now."""
    from inference.bundle import BundleError

    try:
        if run.model_version is not None:
            return bundle_at(run.model_version.bundle_path, run.model_version.sha256)
        return active_bundle()
    except BundleError as exc:
        raise AnalysisError(f"the model cannot be loaded: {exc}") from exc


# --------------------------------------------------------------------------- status

def settle_study_status(study_id: int) -> None:
    """Derive the study's AI status and worklist AI columns from its runs: analysing while one is pending, else
    ai_done or failed; the columns are the latest succeeded run's (``columns.refresh_ai_columns``).

    Once a human has the study (in review, reviewed) its status is theirs and analyses do not touch it; its AI
    columns still show the newest result. A failed re-analysis leaves an analysed study ai_done: its earlier results
    still stand. The study row is locked first, so runs of one study finishing together settle one after the other
    and the last to commit sees the other's result.
    """
    with transaction.atomic():
        study = Study.objects.select_for_update().get(pk=study_id)
        refresh_ai_columns([study_id])
        if study.status not in {Study.Status.NEW, Study.Status.ANALYSING, Study.Status.AI_DONE, Study.Status.FAILED}:
            return
        runs = AnalysisRun.objects.filter(study_id=study_id)
        if runs.filter(status__in=[AnalysisRun.Status.QUEUED, AnalysisRun.Status.RUNNING]).exists():
            new = Study.Status.ANALYSING
        elif runs.filter(status=AnalysisRun.Status.SUCCEEDED).exists():
            new = Study.Status.AI_DONE
        else:
            new = Study.Status.FAILED
        if new != study.status:
            study.status = new
            study.save(update_fields=["status", "updated_at"])


def mark_running(run: AnalysisRun) -> None:
    AnalysisRun.objects.filter(pk=run.pk).update(status=AnalysisRun.Status.RUNNING, error="")
    run.status = AnalysisRun.Status.RUNNING
    if run.job is not None:
        run.job.start()
    settle_study_status(run.study_id)


def mark_failed(run: AnalysisRun, reason: str, details: str = "") -> None:
    """Record a final failure on the run (one line), its job (the details, e.g. a traceback) and its study's
    status, in one transaction: whoever sees the job failed (a client polling it) sees the study settled too."""
    with transaction.atomic():
        AnalysisRun.objects.filter(pk=run.pk).update(status=AnalysisRun.Status.FAILED, error=reason,
                                                     finished_at=timezone.now())
        if run.job is not None:
            run.job.fail(f"{reason}\n\n{details}".strip())
        settle_study_status(run.study_id)
    run.status, run.error = AnalysisRun.Status.FAILED, reason


# --------------------------------------------------------------------------- the analysis

def execute(run: AnalysisRun, report: Progress) -> None:
    """Analyse the run's study and store everything; raises AnalysisError for inputs no retry can fix."""
    from inference.pipeline import analyze

    started = time.perf_counter()
    series = ct_series(run.study)
    bundle = run_bundle(run)
    report(2, f"reading {series.instances.count()} images")
    volume = load_volume(series)
    loaded = time.perf_counter()
    report(5, f"analysing {volume.n_slices} slices with {bundle.name} {bundle.version}")
    result = analyze(volume, bundle, saliency=run.saliency_mode,
                     progress=lambda fraction, message="": report(5 + 85 * fraction, message))
    analysed = time.perf_counter()
    report(90, "storing maps")
    map_names = maps.save_run_maps(run.pk, result.maps, result.lung_mask, result.opacity_mask)
    maps.save_lung_mask(run.pk, result.lung_mask)
    maps.save_opacity_mask(run.pk, result.opacity_mask)
    timings = {"load": loaded - started, "analyze": analysed - loaded, "store": time.perf_counter() - analysed}
    store_result(run, series, bundle, volume, result.to_json(), map_names, timings)
    report(100, "done")


def patient_corners(volume: Volume, index: int, x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    """Patient (X, Y, Z) mm of the centres of a box's four corner pixels, clockwise from the top left, rounded to
    micrometres like the review API's boxes. Empty when the series carries no geometry (only the pixel box is known).
    """
    try:
        corners = [volume.pixel_to_patient(index, x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
    except ValueError:
        return []
    return [[round(v, 3) for v in corner] for corner in corners]


def store_result(run: AnalysisRun, series: Series, bundle: Bundle, volume: Volume, doc: dict,
                 map_names: dict[int, str], timings: dict[str, float]) -> None:
    """Write the run's results in one transaction, replacing whatever an earlier attempt of this run wrote."""
    with transaction.atomic():
        locked = AnalysisRun.objects.select_for_update().get(pk=run.pk)
        if locked.status == AnalysisRun.Status.SUCCEEDED:  # a concurrent delivery of the same run got here first
            return
        locked.slices.all().delete()  # findings go with them

        prediction = doc["prediction"]
        probabilities = {k: float(v) for k, v in prediction["probabilities"].items()}
        model_version = run.model_version or ModelVersion.objects.filter(sha256=bundle.sha256).order_by(
            "-is_active", "-created_at").first()
        locked.series, locked.model_version = series, model_version
        locked.model_name, locked.model_version_label = bundle.name, bundle.version
        # The registered (storage) path when there is one: a local cache folder means nothing on another host.
        locked.bundle_path = model_version.bundle_path if model_version else str(bundle.path)
        locked.model_sha256, locked.classes = bundle.sha256, bundle.classes
        locked.label, locked.probabilities = prediction["label"], probabilities
        locked.probability = probabilities[prediction["label"]]
        locked.uncertainty = 1.0 - max(probabilities.values())
        locked.infection_percent, locked.lung_volume_ml = doc["infection_percent"], doc["lung_volume_ml"]
        opacity, domain = doc.get("opacity") or {}, doc.get("domain") or {}  # absent in a /1 document
        locked.opacity_percent, locked.high_opacity_percent = opacity.get("percent"), opacity.get("high_percent")
        locked.domain_score, locked.domain_outside = domain.get("score"), domain.get("outside")
        locked.timings_s = {**doc["timings_s"], **{k: round(v, 3) for k, v in timings.items()}}
        locked.result, locked.status, locked.error = doc, AnalysisRun.Status.SUCCEEDED, ""
        locked.finished_at = timezone.now()
        locked.save()

        slices = SliceResult.objects.bulk_create(
            SliceResult(run=locked, index=s["index"], sop_instance_uid=s["sop_instance_uid"] or "",
                        instance_number=s["instance_number"], z_mm=s["z_mm"], probabilities=s["probabilities"],
                        lung_area_px=s["lung_area_px"], infected_area_px=s["infected_area_px"],
                        opacity_px=s.get("opacity_px", 0), maps=map_names.get(s["index"], ""))
            for s in doc["slices"]
        )
        by_index = {s.index: s for s in slices}
        boxes = [(s, b) for s in doc["slices"] for b in s["boxes"]]
        findings = Finding.objects.bulk_create(
            Finding(run=locked, slice=by_index[s["index"]], sop_instance_uid=by_index[s["index"]].sop_instance_uid,
                    x0=b["x0"], y0=b["y0"], x1=b["x1"], y1=b["y1"], score=b["score"],
                    label=max(s["probabilities"], key=s["probabilities"].get),
                    patient_coords=patient_corners(volume, s["index"], b["x0"], b["y0"], b["x1"], b["y1"]))
            for s, b in boxes
        )
        # The review app turns the findings into proposed boxes (replacing an earlier attempt's), in this transaction.
        results_stored.send(sender=AnalysisRun, run=locked, findings=findings, labels=[b["label"] for _, b in boxes])
        if locked.job is not None:
            locked.job.finish({"analysis_run_id": locked.pk, "label": locked.label,
                               "probability": locked.probability, "findings": len(findings)},
                              message=f"{locked.label} ({locked.probability:.0%})")
        settle_study_status(locked.study_id)
    run.refresh_from_db()


# --------------------------------------------------------------------------- maps on demand

def slice_map(slice_result: SliceResult, kind: str) -> np.ndarray:
    """One map of a slice: from its stored file, else computed now (and stored for the next request)."""
    if slice_result.maps and default_storage.exists(slice_result.maps.name):
        return maps.load_map(slice_result.maps.name, kind)
    return maps.unpack(compute_slice_maps(slice_result), kind)


def slice_opacity(slice_result: SliceResult) -> np.ndarray:
    """The opacity labels of any lung slice, without running the model: from the slice's maps file, else the run's
    opacity mask (zero on the slices the classifier called normal: the pipeline counts opacity only where it sees
    disease), else, for a run from before the opacity mask existed, measured now on the run's lungs in every slice
    and stored (the viewer asks for slice after slice, and reading the series once serves them all)."""
    if slice_result.maps and default_storage.exists(slice_result.maps.name):
        labels = maps.load_labels(slice_result.maps.name, "opacity")
        if labels is not None:
            return labels
    index, run = slice_result.index, slice_result.run
    labels = maps.load_opacity_slice(run.pk, index)
    if labels is not None:
        return labels
    from inference.pipeline import lung_slices, measure_opacity

    volume = readable_volume(run)
    lungs = run_lungs(run, volume)
    mask, _ = measure_opacity(volume, lungs, lung_slices(lungs.sum(axis=(1, 2)), lungs.shape[1] * lungs.shape[2]))
    maps.save_opacity_mask(run.pk, mask)
    return mask[index]


def map_png(slice_result: SliceResult, kind: str) -> tuple[bytes, float]:
    """The PNG of one map and its raw maximum: opacity labels in colour, saliency maps as grayscale."""
    if kind == "opacity":
        return maps.render_labels_png(slice_opacity(slice_result))
    return maps.render_png(slice_map(slice_result, kind))


def run_lungs(run: AnalysisRun, volume: Volume) -> np.ndarray:
    """The lung mask the run used (stored with it), or the lungs segmented now for a run stored without one."""
    from inference.lungs import segment_lungs

    lung_mask = maps.load_lung_mask(run.pk)
    if lung_mask is None or lung_mask.shape != volume.array.shape:
        lung_mask = segment_lungs(volume)
    return lung_mask


def readable_volume(run: AnalysisRun) -> Volume:
    """The run's series as a volume, for maps computed after the run; MapsUnavailable when it cannot be read."""
    if run.series is None:
        raise MapsUnavailable(f"the series of analysis run {run.pk} has been deleted")
    try:
        return load_volume(run.series)
    except (AnalysisError, FileNotFoundError) as exc:
        raise MapsUnavailable(f"the images of analysis run {run.pk} cannot be read: {exc}") from exc


def compute_slice_maps(slice_result: SliceResult) -> dict[str, np.ndarray]:
    """Saliency for one slice of a finished run, with the run's own model and lungs, stored like the task's maps.

    Returns the packed maps, so the request that computed them serves them without reading the file back.
    """
    from inference.bundle import BundleError
    from inference.pipeline import slice_maps

    run = slice_result.run
    try:
        bundle = bundle_at(run.bundle_path, run.model_sha256)
    except BundleError as exc:
        raise MapsUnavailable(f"the model of analysis run {run.pk} is no longer available: {exc}") from exc
    volume = readable_volume(run)
    lung_mask = run_lungs(run, volume)
    index = slice_result.index
    packed = maps.pack(slice_maps(volume, bundle, index, lung_mask), lung_mask[index], slice_opacity(slice_result))
    name = maps.save_slice_maps(run.pk, index, packed)
    SliceResult.objects.filter(pk=slice_result.pk).update(maps=name)
    slice_result.maps = name
    return packed
