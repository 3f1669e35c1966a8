"""Retraining runs: queue one, run it on the ``gpu`` worker, cancel it, read its progress.

A run exports its DatasetVersion in the training-ready layout (de-identified, into the run's work folder), calls
``training.retrain.retrain`` with a progress callback that writes the latest record to the run and a
``should_stop`` that reads the Job's cancel flag, scores the new bundle and the active one on the same held-out
studies, and registers the new bundle (written straight into ``<storage>/models/<name>-<version>``) as a
ModelVersion. It is not promoted: an admin compares and promotes.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from webapp.curation.exports import write_training_ready
from webapp.curation.models import DatasetVersion
from webapp.jobs.models import Job
from webapp.registry.bundle_store import local_bundle, stored_name
from webapp.registry.models import ModelVersion, TrainingRun
from webapp.registry.services import ensure_default_model_version, models_dir, register_bundle

if TYPE_CHECKING:  # torch: imported by the functions that train, in the gpu worker, not by the web process
    from training.retrain import RetrainConfig

#: How often ``should_stop`` asks the database (it is called every iteration).
CANCEL_POLL_S = 0.5


def work_dir(run: TrainingRun) -> Path:
    return Path(settings.MEDIA_ROOT) / "training" / f"run{run.pk}"


def create_training_run(version: DatasetVersion, config: dict[str, Any], user=None) -> TrainingRun:
    """A queued TrainingRun and its Job; the task goes to the ``gpu`` queue once the rows are committed."""
    from .tasks import train_model

    with transaction.atomic():
        job = Job.objects.create(kind=Job.Kind.TRAIN, created_by=user, message="queued",
                                 params={"dataset_version": version.pk, "config": config})
        run = TrainingRun.objects.create(dataset_version=version, job=job, config=config, created_by=user,
                                         total_iterations=int(config["iterations"]))
        transaction.on_commit(lambda: train_model.delay(run.pk))
    return run


def request_cancel(run: TrainingRun) -> TrainingRun:
    """Ask the worker to stop; a run that has not started yet is cancelled on the spot."""
    if run.job_id:
        Job.objects.filter(pk=run.job_id).update(cancel_requested=True)
    if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
            status=TrainingRun.Status.CANCELLED, finished_at=timezone.now()):
        if run.job is not None:
            run.job.cancel("cancelled before it started")
    run.refresh_from_db()
    return run


def retrain_config(run: TrainingRun, out_dir: Path) -> RetrainConfig:
    """The API's config (task, iterations, seed, start_bundle; optional width, batch_size, max_slices, input_size,
    outside_lungs_mm) as ``RetrainConfig``: validation 5 times per run, a progress record every ~1% for the live
    chart. A start bundle brings its own input size, blanking and normalisation (retrain takes them from its
    model.json)."""
    from training.datasets import TASKS, PrepConfig
    from training.retrain import RetrainConfig
    from training.train import TrainConfig

    config = run.config
    iterations = int(config["iterations"])
    start = config.get("start_bundle")
    base = str(local_bundle(ModelVersion.objects.get(pk=start).bundle_path)) if start else None
    return RetrainConfig(
        out_dir=out_dir, name=out_dir.name.rsplit("-", 1)[0], version=out_dir.name.rsplit("-", 1)[1],
        classes=TASKS[config["task"]], base_bundle=base, width=float(config.get("width", 1.0)),
        prep=PrepConfig(size=int(config.get("input_size", 224)), max_slices=config.get("max_slices"),
                        outside_lungs_mm=config.get("outside_lungs_mm")),
        train=TrainConfig(iterations=iterations, seed=int(config.get("seed", 0)),
                          batch_size=int(config.get("batch_size", 16)), val_every=max(1, iterations // 5),
                          patience=max(iterations, 1), log_every=max(1, iterations // 100), progress_bar=False),
        device=str(config.get("device", "auto")), work_dir=work_dir(run) / "train",
    )


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None: PostgreSQL's JSON has no such numbers (a diverged loss has them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


@dataclass
class _Progress:
    """The retrain progress callback: latest record onto the run, percentage onto the job."""

    run: TrainingRun
    job: Job

    def __call__(self, record: dict[str, Any]) -> None:
        iteration = int(record.get("iter", 0))
        TrainingRun.objects.filter(pk=self.run.pk).update(iteration=iteration, last_metrics=json_safe(record))
        total = max(1, self.run.total_iterations)
        loss = record.get("loss")
        self.job.report(10 + 75 * iteration / total,
                        f"iteration {iteration}/{total}" + (f", loss {loss:.4f}" if loss is not None else ""))


@dataclass
class _StopFlag:
    """``should_stop``: the Job's cancel flag, read at most every CANCEL_POLL_S seconds."""

    job: Job
    _last: float = 0.0
    _stop: bool = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self._stop and now - self._last >= CANCEL_POLL_S:
            self._last, self._stop = now, self.job.is_cancel_requested()
        return self._stop


def _finish(run: TrainingRun, status: str, **fields) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(status=status, finished_at=timezone.now(), **fields)


def run_training(run: TrainingRun) -> None:
    """The task body (see the module docstring); the Job and the run end in exactly one final state."""
    from training.retrain import RetrainCancelled, retrain, summary_metrics

    from .evaluation import compare

    job = run.job
    work = work_dir(run)
    shutil.rmtree(work, ignore_errors=True)  # a redelivered run starts over
    name = f"lungscope-{run.config['task']}"
    out_dir = models_dir() / f"{name}-run{run.pk}"
    if out_dir.exists() and not ModelVersion.objects.filter(bundle_path=str(out_dir)).exists():
        shutil.rmtree(out_dir)  # left by an attempt that died before registering it
    job.report(2, "exporting the dataset version (training-ready, de-identified)")
    export_dir = work / "data"
    write_training_ready(run.dataset_version, export_dir, deidentify=True,
                         progress=lambda fraction, message: job.report(2 + 8 * fraction, f"exporting: {message}"))
    if job.is_cancel_requested():  # asked while the data was being exported: no need to start training
        _finish(run, TrainingRun.Status.CANCELLED)
        job.cancel("cancelled before training started")
        shutil.rmtree(work, ignore_errors=True)
        return
    config = retrain_config(run, out_dir)
    metrics_log = config.work_dir / "metrics.jsonl"
    TrainingRun.objects.filter(pk=run.pk).update(metrics_log=str(metrics_log.relative_to(work.parents[1])))
    try:
        result = retrain(export_dir, config, progress=_Progress(run, job), should_stop=_StopFlag(job))
    except RetrainCancelled as exc:
        _finish(run, TrainingRun.Status.CANCELLED)
        job.cancel(str(exc))
        return
    job.report(88, "scoring the new and the active version on the held-out studies")
    ensure_default_model_version()  # a fresh install compares against the shipped bundle
    active = ModelVersion.objects.filter(is_active=True).first()
    active_dir = str(local_bundle(active.bundle_path)) if active else None
    comparison = compare(export_dir, config, result.bundle_dir, active_dir, result.bundle_dir / "roc.png")
    comparison["active_version"] = active.pk if active else None
    shutil.copyfile(result.log_path, result.bundle_dir / "training_log.jsonl")
    meta = json.loads((result.bundle_dir / "model.json").read_text())
    metrics = json_safe({"held_out": summary_metrics(result.metrics), "comparison": comparison,
                         "training": meta.get("training", {})})
    (result.bundle_dir / "report.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    version = register_bundle(result.bundle_dir, source="trained", user=run.created_by, metrics=metrics,
                              config=run.config, dataset_version=run.dataset_version)
    version.roc_plot = stored_name(version.bundle_path, "roc.png")  # published with the bundle: any host serves it
    version.training_log = stored_name(version.bundle_path, "training_log.jsonl")
    version.save(update_fields=["roc_plot", "training_log"])
    for checkpoint in config.work_dir.glob("*.pt"):
        checkpoint.unlink()
    shutil.rmtree(export_dir, ignore_errors=True)
    _finish(run, TrainingRun.Status.SUCCEEDED, model_version=version)
    job.finish(result={"training_run": run.pk, "model_version": version.pk},
               message=f"registered {version.name} {version.version}")


def read_progress(run: TrainingRun, after: int = 0) -> dict[str, Any]:
    """The run's logged records with ``iter`` > ``after`` (for incremental chart updates) and an ETA."""
    points: list[dict[str, Any]] = []
    if run.metrics_log:
        path = Path(settings.MEDIA_ROOT) / run.metrics_log
        if path.is_file():
            with open(path) as fh:
                for line in fh:
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:  # a line being written right now
                        continue
                    if int(record.get("iter", 0)) > after:
                        points.append(json_safe(record))
    eta = run.last_metrics.get("eta_s") if run.status == TrainingRun.Status.RUNNING else None
    if eta is None and run.status == TrainingRun.Status.RUNNING and run.started_at and run.iteration:
        elapsed = (timezone.now() - run.started_at).total_seconds()
        eta = elapsed / run.iteration * max(0, run.total_iterations - run.iteration)
    return {"id": run.pk, "status": run.status, "iteration": run.iteration, "total_iterations": run.total_iterations,
            "eta_s": eta, "last": run.last_metrics, "points": points,
            "job": {"id": run.job_id, "progress": run.job.progress if run.job else None,
                    "message": run.job.message if run.job else ""}}
