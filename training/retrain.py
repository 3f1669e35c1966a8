"""Retraining from a curated export: the entry point of the web app's retraining job.

``retrain(export_dir, config, progress=..., should_stop=...)`` reads a training-ready export
(:mod:`training.datasets`), splits it by patient into train / validation / held-out test, trains (from a starting
bundle or from scratch) with the paper's recipe, evaluates on the held-out studies and writes a new bundle.

Cancel safety: ``should_stop`` is polled every iteration. The bundle is written into a temporary sibling folder and
renamed into place only when complete, so a cancel (or a crash) never leaves a half-written bundle; a cancel raises
:class:`RetrainCancelled` after cleaning up.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inference.bundle import DEFAULT_META, load_bundle, save_bundle

from .crossval import evaluate
from .datasets import PrepConfig, build_slice_set, export_studies, group_split
from .train import TrainConfig, make_model, train

__all__ = ["RetrainConfig", "RetrainResult", "RetrainCancelled", "retrain", "write_bundle", "summary_metrics"]


class RetrainCancelled(RuntimeError):
    """``should_stop`` asked to stop; nothing was written to the bundle folder."""


@dataclass
class RetrainConfig:
    """What the retraining job chooses; ``train`` holds the recipe (budget, lr, ...)."""

    out_dir: str | Path                         # the new bundle folder (must not exist yet)
    name: str = "retrained"
    version: str = "1"
    classes: tuple[str, ...] | None = None      # None: the export's labels in 3-way order (NP, CAP, COVID first)
    base_bundle: str | Path | None = None       # start from these weights; None trains from scratch
    width: float = 1.0                          # used when training from scratch
    test_fraction: float = 0.2                  # held-out studies for the reported metrics
    val_fraction: float = 0.2                   # of the rest, for early stopping / checkpoint choice
    prep: PrepConfig = field(default_factory=PrepConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(iterations=2_000, val_every=100, patience=500))
    device: str = "auto"
    work_dir: str | Path | None = None          # training log + checkpoints; a temporary folder when None


@dataclass
class RetrainResult:
    bundle_dir: Path
    metrics: dict[str, Any]
    log_path: Path


def write_bundle(model: nn.Module, out_dir: str | Path, meta: dict[str, Any]) -> Path:
    """``save_bundle`` into a temporary sibling, then rename: the folder appears complete or not at all."""
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists; bundles are immutable, choose a new folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_bundle(model, tmp, meta)
        tmp.chmod(0o755)  # mkdtemp makes it private; the web server and workers must read the bundle
        tmp.replace(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _ordered_classes(labels: list[str]) -> tuple[str, ...]:
    known = [c for c in ("NP", "CAP", "COVID") if c in labels]
    return tuple(known + sorted(set(labels) - set(known)))


def retrain(export_dir: str | Path, config: RetrainConfig, progress: Callable[[dict[str, Any]], None] | None = None,
            should_stop: Callable[[], bool] | None = None) -> RetrainResult:
    """Train a bundle on a curated export and report held-out metrics; see the module docstring."""
    records = list(export_studies(export_dir))
    classes = config.classes or _ordered_classes([r.label for r in records])
    base = load_bundle(config.base_bundle, device="cpu", expected_classes=list(classes)) if config.base_bundle else None
    prep = config.prep
    if base is not None:
        prep = PrepConfig.for_bundle(base.meta, min_lung_fraction=prep.min_lung_fraction, max_slices=prep.max_slices,
                                     lungs=prep.lungs)
    data = build_slice_set(records, classes, prep)
    rest, test = group_split(data.study_labels, data.groups, config.test_fraction, seed=config.train.seed)
    rest_set = data.subset(rest)
    tr, va = group_split(rest_set.study_labels, rest_set.groups, config.val_fraction, seed=config.train.seed + 1)
    model = base.model if base is not None else make_model("MultiScaleVGG", len(classes), config.width)

    work = Path(config.work_dir) if config.work_dir else Path(tempfile.mkdtemp(prefix="lungscope-retrain-"))
    torch.manual_seed(config.train.seed)
    t0 = time.time()
    result = train(model, rest_set.subset(tr), rest_set.subset(va), config.train, out_dir=work,
                   progress=progress, should_stop=should_stop, device=config.device)
    if result.stopped:
        raise RetrainCancelled(f"retraining cancelled at iteration {result.iterations}; no bundle written")
    aggregation = dict(DEFAULT_META["aggregation"] if base is None else base.meta["aggregation"])
    metrics = evaluate(result.model, data.subset(test), aggregation)
    meta = {
        "name": config.name, "version": config.version, "classes": list(classes),
        "input_size": [prep.size, prep.size], "crop": {"margin": prep.margin, **({} if prep.outside_lungs_mm is None
                                           else {"outside_lungs_mm": prep.outside_lungs_mm})},
        "normalization": prep.normalization_params, "aggregation": aggregation,
        "training_data_fingerprint": data.fingerprint(),
        "metrics": {"held_out": summary_metrics(metrics), "held_out_studies": int(len(test))},
        "training": {"recipe": config.train.to_dict(), "base_bundle": str(config.base_bundle or ""),
                     "iterations": result.iterations, "best": result.best, "wall_s": round(time.time() - t0, 1),
                     "train_studies": int(len(tr)), "val_studies": int(len(va)),
                     "class_counts": data.class_counts()},
    }
    bundle_dir = write_bundle(result.model, config.out_dir, meta)
    return RetrainResult(bundle_dir=bundle_dir, metrics=metrics, log_path=work / "metrics.jsonl")


def summary_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The joint classifier's summary figures at slice and study level: what model.json carries."""
    return {level: {k: (None if v != v else round(float(v), 4)) for k, v in metrics[level]["joint"]["summary"].items()}
            for level in ("slice", "study")}


