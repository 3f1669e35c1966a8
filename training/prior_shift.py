"""``python -m training prior-shift``: fit a bundle's study prior shift on a cross-validation's held-out studies.

A leave-one-background-out cross-validation (``crossval --split-by background``) keeps, per fold, every held-out
study's class and probabilities (``folds.json``: ``held_out_studies``). On that anatomy, which the fold's model
never saw, a healthy chest looks more diseased to the model than the training patients' validation studies did; the
study rule and temperature chosen on validation cannot see that. This command

1. measures the shift's effect *nested*: each fold's studies are scored with the offset fitted on the other folds
   (``training.calibration.held_out_prior_shifts``), before and after, so the figure is not the fit's own;
2. fits the offset on all folds' held-out studies, and with ``--bundle`` writes it to that bundle's ``model.json``
   (``aggregation.prior_shift``, with where it came from under ``calibration.prior_shift``).

The folds' models are not the shipped one (each trained on four of the five backgrounds, the shipped one on all
five), and each fold scored with its own study rule: the offset is an estimate of the shipped model's shift on a
new patient, and the model card must say so.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import (expected_calibration_error, fit_prior_shift, held_out_prior_shifts,
                          negative_log_likelihood)
from .metrics import classification_metrics

__all__ = ["held_out_folds", "held_out_ids", "study_figures", "nested_figures", "nested_summary", "edit_bundle_meta",
           "prior_shift_report", "write_prior_shift"]


def _held_out(crossval_dir: Path, model: str) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    raw = json.loads((Path(crossval_dir) / "folds.json").read_text())
    kept = [fold["models"][model].get("held_out_studies") for fold in raw["folds"]]
    if any(k is None for k in kept):
        raise ValueError(f"{crossval_dir}/folds.json has no held-out study probabilities: rerun crossval with "
                         "this version")
    return list(raw["classes"]), [fold["held_out"] for fold in raw["folds"]], kept


def held_out_folds(crossval_dir: Path, model: str = "MultiScaleVGG",
                   classifier: str = "joint") -> tuple[list[str], list[str], list[tuple[np.ndarray, np.ndarray]]]:
    """(classes, each fold's held-out name, each fold's (study probabilities, study classes)) from ``folds.json``."""
    classes, names, kept = _held_out(crossval_dir, model)
    return classes, names, [(np.asarray(k["probs"][classifier], dtype=np.float64), np.asarray(k["labels"]))
                            for k in kept]


def held_out_ids(crossval_dir: Path, model: str = "MultiScaleVGG") -> list[list[str]]:
    """Each fold's held-out study ids, in the order of :func:`held_out_folds`' rows."""
    _, _, kept = _held_out(crossval_dir, model)
    if any("ids" not in k for k in kept):
        raise ValueError(f"{crossval_dir}/folds.json does not name its held-out studies: rerun crossval with this "
                         "version")
    return [list(k["ids"]) for k in kept]


def study_figures(probs: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro AUC, NLL, ECE and per-class sensitivity / specificity of study probability rows."""
    metrics = classification_metrics(labels, probs, classes)
    return {"accuracy": round(metrics["accuracy"], 4), "auc": round(metrics["summary"]["auc"], 4),
            "nll": round(negative_log_likelihood(probs, labels), 4),
            "ece": round(expected_calibration_error(labels, probs), 4),
            "sensitivity": {c: round(metrics["per_class"][c]["sensitivity"], 4) for c in classes},
            "specificity": {c: round(metrics["per_class"][c]["specificity"], 4) for c in classes}}


def nested_figures(names: list[str], folds: list[tuple[np.ndarray, np.ndarray]], after: list[np.ndarray],
                   classes: list[str], extras: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per fold (with its ``extras``) and pooled: the figures of each fold's study probabilities before and after a
    decision rule fitted without that fold's studies."""
    probs, labels = np.concatenate([p for p, _ in folds]), np.concatenate([y for _, y in folds])
    return {"per_fold": [{"held_out": name, **extra, "before": study_figures(p, y, classes),
                          "after": study_figures(q, y, classes)}
                         for name, (p, y), q, extra in zip(names, folds, after, extras or [{} for _ in folds])],
            "pooled_before": study_figures(probs, labels, classes),
            "pooled_after": study_figures(np.concatenate(after), labels, classes)}


def nested_summary(report: dict[str, Any]) -> dict[str, Any]:
    """What a bundle keeps of a nested report: where the rule was fitted and its pooled accuracy and NLL, before and
    after."""
    nested = report["nested"]
    return {"fitted_on": f"held-out studies of {report['crossval']} ({report['studies']} studies, leave one "
                         "background out)",
            "nested_accuracy": [nested["pooled_before"]["accuracy"], nested["pooled_after"]["accuracy"]],
            "nested_nll": [nested["pooled_before"]["nll"], nested["pooled_after"]["nll"]]}


def edit_bundle_meta(bundle_dir: Path, version: str | None, edit: Callable[[dict[str, Any]], None]) -> None:
    """Apply ``edit`` to a bundle's ``model.json`` (and give it a new version: a rule fitted after training leaves the
    weights alone and changes the study decisions)."""
    path = Path(bundle_dir) / "model.json"
    meta = json.loads(path.read_text())
    if version:
        meta["version"] = version
    edit(meta)
    path.write_text(json.dumps(meta, indent=2) + "\n")


def prior_shift_report(crossval_dir: Path, shifted: str = "NP") -> dict[str, Any]:
    """The nested before/after figures per fold and pooled, and the offset fitted on every fold."""
    classes, names, folds = held_out_folds(crossval_dir)
    offsets, after = held_out_prior_shifts(folds, classes, shifted)
    probs, labels = np.concatenate([p for p, _ in folds]), np.concatenate([y for _, y in folds])
    return {"crossval": str(crossval_dir), "shifted_class": shifted, "studies": int(labels.size),
            "offset": fit_prior_shift(probs, labels, classes, shifted),
            "nested": nested_figures(names, folds, after, classes, [{"offset": offset} for offset in offsets])}


def write_prior_shift(bundle_dir: Path, report: dict[str, Any], version: str | None = None) -> None:
    """Store the fitted offset in a bundle's ``model.json``, with its source and nested effect."""
    def edit(meta: dict[str, Any]) -> None:
        meta.setdefault("aggregation", {})["prior_shift"] = {report["shifted_class"]: report["offset"]}
        meta.setdefault("calibration", {})["prior_shift"] = nested_summary(report)

    edit_bundle_meta(bundle_dir, version, edit)
