"""Patient-level k-fold cross-validation of the paper's model and the ResNet-18 baseline, and model evaluation.

For each fold (stratified group k-fold over studies, patients never split): a validation split is carved from the
training studies (groups kept apart again) for checkpoint choice and early stopping; every model in ``models`` is
trained from scratch with the same data, loss and budget; the held-out studies are predicted. Each classifier
(MultiScaleVGG's conv3, conv4, conv5 and joint; the baseline's single output) is scored at slice level and at study
level (slice probabilities aggregated with the bundle's rule, top-k mean by default). :mod:`training.report` turns
the per-fold figures into means with 95% t-intervals over folds.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inference.bundle import DEFAULT_META

from .calibration import choose_aggregation, logits_and_features
from .datasets import SliceSet, group_kfold, group_split
from .metrics import classification_metrics, study_level
from .train import TrainConfig, make_model, predict, train

__all__ = ["ModelSpec", "CrossvalConfig", "evaluate", "predictions", "score", "run_crossval"]


@dataclass(frozen=True)
class ModelSpec:
    """A model to cross-validate: the label in the tables, the architecture, its width, and optionally the bundle
    whose backbone it starts from (``make_model``'s ``init``)."""

    label: str
    arch: str
    width: float = 1.0
    init: str | None = None


@dataclass
class CrossvalConfig:
    folds: int = 5
    val_fraction: float = 0.2
    seed: int = 0
    models: tuple[ModelSpec, ...] = (ModelSpec("MultiScaleVGG", "MultiScaleVGG"), ModelSpec("ResNet-18", "resnet18"))
    train: TrainConfig = field(default_factory=TrainConfig)
    aggregation: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_META["aggregation"]))
    #: Choose each fold's study rule and temperature on its validation studies, as ``train-default`` does for the
    #: shipped bundle (``training.calibration.choose_aggregation``); False scores every fold with ``aggregation``.
    choose_rule: bool = True
    device: str = "auto"
    max_slices: int | None = None  # per training study (SliceSet.capped); test studies keep every lung slice


def predictions(model: nn.Module, data: SliceSet, aggregation: dict[str, Any],
                device: str | torch.device = "cpu", temperature: float = 1.0) -> dict[str, Any]:
    """Slice- and study-level labels and probabilities of every classifier of ``model`` on ``data``."""
    probs = predict(model, data.images, device=device, temperature=temperature)
    labels = data.labels.numpy()
    scored = labels >= 0  # slices without a label count in their study, not as slices (SliceSet.labelled)
    out: dict[str, Any] = {"slice": {"labels": labels[scored], "probs": {name: p[scored] for name, p in probs.items()}},
                           "study": {"probs": {}}}
    for name, p in probs.items():
        ids, _, ps = study_level(labels, p, data.study, data.classes, aggregation)
        # The study's own class: with image-level slice labels a diseased study has NP slices too.
        out["study"]["labels"], out["study"]["probs"][name] = data.study_labels[ids], ps
        out["study"]["ids"] = [data.study_ids[int(i)] for i in ids]
    return out


def score(pred: dict[str, Any], classes: tuple[str, ...]) -> dict[str, Any]:
    """``{"slice"|"study": {classifier: classification_metrics}}`` from :func:`predictions` output."""
    return {level: {name: classification_metrics(pred[level]["labels"], p, classes)
                    for name, p in pred[level]["probs"].items()}
            for level in ("slice", "study")}


def evaluate(model: nn.Module, data: SliceSet, aggregation: dict[str, Any],
             device: str | torch.device = "cpu", temperature: float = 1.0) -> dict[str, Any]:
    """:func:`score` of ``model``'s predictions on ``data``."""
    return score(predictions(model, data, aggregation, device, temperature), data.classes)


def _held_out_name(test: SliceSet) -> str:
    """What a fold tests on: its sources and, for a few groups, the groups."""
    groups = sorted(set(test.groups.tolist()))
    sources = sorted(set(test.sources.tolist())) if test.sources is not None else []
    return "/".join(sources) + (f" ({', '.join(groups)})" if len(groups) <= 3 else f" ({len(groups)} patients)")


def _study_rule(model: nn.Module, val: SliceSet, config: CrossvalConfig) -> tuple[dict[str, Any], float]:
    """The study rule and temperature a fold's model is scored with: chosen on its validation studies when
    ``config.choose_rule`` (what a shipped bundle carries), else ``config.aggregation`` at temperature 1. Before,
    every fold was scored with the default top-5 rule, so the study figures of a leave-one-background-out run
    were not those of the recipe that made the shipped bundle (which chose ``mean`` on validation)."""
    if not config.choose_rule or len(val) == 0:
        return dict(config.aggregation), 1.0
    logits, _ = logits_and_features(model, val.images)
    return choose_aggregation(logits, val.study, val.study_labels, list(val.classes), config.aggregation)


def run_crossval(data: SliceSet, config: CrossvalConfig, out_dir: str | Path,
                 log: Callable[[str], None] = print,
                 splits: list[tuple[np.ndarray, np.ndarray]] | None = None) -> dict[str, Any]:
    """Train and score every model on every fold; returns (and writes ``folds.json``) the raw per-fold results.

    Result: ``{"classes", "folds": [{"fold", "n_train_studies", "n_test_studies", "models": {label: {"metrics":
    evaluate(...), "train": {...}}}}], "roc": {label: {level: {classifier: {"labels", "probs"}}}}}`` where ``roc``
    pools the held-out predictions of all folds for the ROC figures. ``splits`` replaces the patient-grouped
    k-fold (e.g. ``datasets.held_out_splits``: leave one source or one real background out).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = splits or group_kfold(data.study_labels, data.groups, config.folds, seed=config.seed)
    folds: list[dict[str, Any]] = []
    pooled: dict[str, dict[str, dict[str, list[np.ndarray]]]] = {}
    for f, (train_idx, test_idx) in enumerate(splits):
        train_pool = data.subset(train_idx)
        tr, va = group_split(train_pool.study_labels, train_pool.groups, config.val_fraction, seed=config.seed + f)
        val, test = train_pool.subset(va), data.subset(test_idx)
        fold: dict[str, Any] = {"fold": f, "held_out": _held_out_name(test), "n_train_studies": int(len(tr)), "n_val_studies": int(len(va)),
                                "n_test_studies": int(len(test_idx)), "n_test_slices": len(test), "models": {}}
        for spec in config.models:
            torch.manual_seed(config.train.seed + f)
            model = make_model(spec.arch, len(data.classes), spec.width, spec.init)
            t0 = time.time()
            result = train(model, train_pool.subset(tr).labelled().capped(config.max_slices), val, config.train,
                           out_dir=out / "runs" / f"fold{f}-{spec.arch}", device=config.device)
            aggregation, temperature = _study_rule(result.model, val, config)
            pred = predictions(result.model, test, aggregation, temperature=temperature)
            metrics = score(pred, data.classes)
            fold["models"][spec.label] = {"metrics": metrics, "train": {
                "iterations": result.iterations, "steps": result.steps, "best": result.best, "wall_s": round(time.time() - t0, 1),
                "slices_per_s": round(result.slices_per_s, 2)},
                "study_rule": {"aggregation": aggregation, "temperature": round(temperature, 4)},
                # each held-out study's id, class and probabilities (after the fold's rule and temperature), so a
                # decision rule can be studied on anatomy the fold never saw without training again
                "held_out_studies": {"ids": pred["study"]["ids"], "labels": pred["study"]["labels"].tolist(),
                                     "probs": {name: np.round(p, 5).tolist()
                                               for name, p in pred["study"]["probs"].items()}}}
            for level in ("slice", "study"):
                for name, p in pred[level]["probs"].items():
                    slot = pooled.setdefault(spec.label, {}).setdefault(level, {}).setdefault(
                        name, {"labels": [], "probs": []})
                    slot["labels"].append(pred[level]["labels"])
                    slot["probs"].append(p)
            joint = metrics["study"]["joint"]["summary"]
            log(f"fold {f + 1}/{len(splits)} {spec.label}: study acc {joint['accuracy']:.3f} "
                f"AUC {joint['auc']:.3f}, slice acc {metrics['slice']['joint']['accuracy']:.3f} "
                f"({time.time() - t0:.0f} s)")
        folds.append(fold)
    roc = {label: {level: {name: {"labels": np.concatenate(v["labels"]), "probs": np.concatenate(v["probs"])}
                           for name, v in levels.items()} for level, levels in by_level.items()}
           for label, by_level in pooled.items()}
    raw = {"classes": list(data.classes), "folds": folds}
    (out / "folds.json").write_text(json.dumps(raw, indent=1, default=float) + "\n")
    return {**raw, "roc": roc}
