"""Evaluation metrics, study-level figures from slice probabilities, and t-intervals over folds.

Definitions (one-vs-rest for each class ``c``, predictions by arg-max): precision = TP / (TP + FP), sensitivity
(recall) = TP / (TP + FN), specificity = TN / (TN + FP), F1 = 2PR / (P + R), AUC = area under the ROC of the class's
probability (sklearn). A ratio with an empty denominator is NaN, not 0, so it does not drag a mean down silently.
The ``summary`` of a binary task is the positive (second) class's row; of a multi-class task the macro mean over
classes (the macro AUC is sklearn's one-vs-rest macro AUC, the mean of the per-class AUCs).

Fold-level figures are summarised as mean with a 95% Student-t interval over folds,
``mean +- t_{0.975, n-1} * sd / sqrt(n)`` (sd with ddof = 1); with 5 folds that interval is wide on purpose.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

__all__ = ["CI", "mean_ci", "one_vs_rest", "classification_metrics", "study_level"]

METRIC_NAMES: tuple[str, ...] = ("accuracy", "precision", "sensitivity", "specificity", "f1", "auc")


@dataclass(frozen=True)
class CI:
    """A mean over folds with its two-sided t-interval; ``n`` counts the finite values used."""

    mean: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    def __str__(self) -> str:
        if math.isnan(self.mean):
            return "n/a"
        return f"{self.mean:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def mean_ci(values: Sequence[float], confidence: float = 0.95,
            bounds: tuple[float, float] | None = (0.0, 1.0)) -> CI:
    """Mean and t-interval of the finite ``values`` (NaNs, e.g. an undefined AUC, are left out).

    The interval is clipped to ``bounds``, the range the metric can take (every metric here is a proportion): with
    five folds and a large spread the t-interval of a sensitivity would otherwise reach below 0 or above 1.
    """
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return CI(math.nan, math.nan, math.nan, 0)
    mean = float(arr.mean())
    if arr.size == 1:
        return CI(mean, mean, mean, 1)
    half = float(stats.t.ppf(0.5 + confidence / 2.0, arr.size - 1) * arr.std(ddof=1) / math.sqrt(arr.size))
    lo, hi = mean - half, mean + half
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return CI(mean, lo, hi, int(arr.size))


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan


def one_vs_rest(y_true: np.ndarray, y_pred: np.ndarray, scores: np.ndarray, positive: int) -> dict[str, float]:
    """Precision, sensitivity, specificity, F1 and AUC of class ``positive`` against the rest."""
    t, p = y_true == positive, y_pred == positive
    tp, fp, fn, tn = float(np.sum(t & p)), float(np.sum(~t & p)), float(np.sum(t & ~p)), float(np.sum(~t & ~p))
    precision, sensitivity = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = _ratio(2 * tp, 2 * tp + fp + fn)
    auc = float(roc_auc_score(t, scores)) if 0 < t.sum() < t.size else math.nan
    return {"precision": precision, "sensitivity": sensitivity, "specificity": _ratio(tn, tn + fp), "f1": f1,
            "auc": auc}


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """``{"accuracy", "n", "per_class": {name: one_vs_rest}, "summary": {accuracy, precision, ..., auc}}``."""
    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    accuracy = float(np.mean(pred == y)) if y.size else math.nan
    per_class = {name: one_vs_rest(y, pred, probs[:, i], i) for i, name in enumerate(classes)}
    if len(classes) == 2:
        summary = dict(per_class[classes[1]])
    else:
        summary = {k: float(np.nanmean([row[k] for row in per_class.values()]))
                   if any(np.isfinite(row[k]) for row in per_class.values()) else math.nan
                   for k in ("precision", "sensitivity", "specificity", "f1", "auc")}
    return {"accuracy": accuracy, "n": int(y.size), "per_class": per_class, "summary": {"accuracy": accuracy, **summary}}


def study_level(labels: np.ndarray, probs: np.ndarray, study_index: np.ndarray, classes: Sequence[str],
                aggregation: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slice labels/probabilities grouped by ``study_index`` -> (study ids, study labels, study probabilities); a
    study's label is its first labelled slice's (-1 when none: ``SliceSet`` keeps unlabelled slices in their study,
    and every slice counts in its study's probabilities).

    Aggregation is ``inference.pipeline.aggregate_as`` itself with a bundle's ``aggregation`` block (e.g. the mean
    of the top-k slices ranked by 1 - P(NP)), so study-level figures measure exactly what the app reports.
    """
    from inference.pipeline import aggregate_as

    study_index = np.asarray(study_index)
    ids = np.unique(study_index)
    y = np.array([next(iter(labels[(study_index == s) & (labels >= 0)]), -1) for s in ids], dtype=np.int64)
    p = np.stack([aggregate_as(probs[study_index == s], list(classes), aggregation) for s in ids])
    return ids, y, p
