"""Calibration and the in-distribution model, fitted after training and stored in the bundle.

* **Temperature scaling** (Guo et al. 2017): the slice logits are divided by one temperature ``T`` before the
  softmax; ``T`` is chosen on the validation studies to minimise the negative log-likelihood of the *study*
  probabilities the app reports (the bundle's aggregation of the slice probabilities), by a grid search (one
  parameter, no gradient needed), over temperatures >= 1 only (see ``TEMPERATURES``). Accuracy is unchanged at
  slice level; confidence becomes honest.
* **Expected calibration error** (ECE, 10 equal-width confidence bins) reports how far confidence is from accuracy.
* **Prior shift** (:func:`fit_prior_shift`, :func:`held_out_prior_shifts`): a log-odds offset for one class of
  the study vector (``aggregation.prior_shift``, applied by ``inference.pipeline.aggregate_as``), fitted by the
  same NLL grid search on the held-out studies of a leave-one-background-out cross-validation, i.e. on anatomy the
  fold's model never saw, where validation studies (the training patients' own) cannot show the shift. Its effect
  is measured nested: each fold is scored with the offset fitted on the other folds.
* **Domain model** for :mod:`inference.domain`: mean and Ledoit-Wolf shrunk precision of the training slices' pooled
  Conv5 features; the threshold is the 99th percentile of the validation studies' scores plus 5 %, so about that
  share of in-distribution studies pass.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from torch import nn

from inference.domain import slice_distances
from inference.pipeline import aggregate_as, shift_prior

__all__ = ["logits_and_features", "study_probabilities", "fit_temperature", "choose_aggregation",
           "AGGREGATION_CANDIDATES", "expected_calibration_error", "negative_log_likelihood", "PRIOR_SHIFTS",
           "fit_prior_shift", "held_out_prior_shifts", "fit_domain", "study_scores"]

#: Temperatures tried, all >= 1: scaling only ever softens. The validation studies come from the training
#: backgrounds, where the model is at its best; a temperature below 1 fitted there (0.25 was) sharpens exactly the
#: overconfidence that new anatomy exposes (held-out ECE rose from 0.12 to 0.17 with it).
TEMPERATURES = np.exp(np.linspace(0.0, np.log(8.0), 41))


def logits_and_features(model: nn.Module, images: torch.Tensor, batch_size: int = 64,
                        device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Joint logits (N, K) and pooled Conv5 features (N, C) of prepared slices (N, S, S)."""
    device = torch.device(device)
    model = model.to(device).eval()
    logits, feats = [], []
    with torch.inference_mode():
        for start in range(0, images.shape[0], batch_size):
            out = model.forward_all(images[start:start + batch_size].to(device).float()[:, None])
            logits.append(out.logits.float().cpu().numpy())
            feats.append(out.pooled.float().cpu().numpy())
    return np.concatenate(logits), np.concatenate(feats)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def study_probabilities(logits: np.ndarray, study: np.ndarray, classes: list[str], aggregation: dict[str, Any],
                        temperature: float = 1.0) -> np.ndarray:
    """The app's study probability vectors (one row per study index 0..n-1) at a temperature."""
    probs = _softmax(logits / temperature)
    return np.stack([aggregate_as(probs[study == s], classes, aggregation) for s in range(int(study.max()) + 1)])


def negative_log_likelihood(p: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class) of probability rows ``p`` (N, K), clipped at 1e-12."""
    return float(-np.log(np.clip(p[np.arange(len(labels)), labels], 1e-12, 1.0)).mean())


def _fit(logits: np.ndarray, study: np.ndarray, study_labels: np.ndarray, classes: list[str],
         aggregation: dict[str, Any]) -> tuple[float, float]:
    """(temperature, its study-level NLL): the temperature of ``TEMPERATURES`` with the lowest NLL."""
    best, best_nll = 1.0, float("inf")
    for t in TEMPERATURES:
        nll = negative_log_likelihood(study_probabilities(logits, study, classes, aggregation, float(t)),
                                      study_labels)
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best, best_nll


def fit_temperature(logits: np.ndarray, study: np.ndarray, study_labels: np.ndarray, classes: list[str],
                    aggregation: dict[str, Any]) -> float:
    """The temperature minimising the study-level negative log-likelihood on these (validation) studies."""
    return _fit(logits, study, study_labels, classes, aggregation)[0]


#: Study decision rules a bundle may take (``inference.pipeline.aggregate``): a fixed number of the most
#: suspicious slices, or a share of them, which does not grow stricter with the number of slices of a scan.
AGGREGATION_CANDIDATES: tuple[dict[str, Any], ...] = (
    *({"rule": "topk_mean", "k": k} for k in (1, 3, 5)),
    *({"rule": "topfraction_mean", "fraction": f} for f in (0.1, 0.2, 0.35, 0.5)),
    {"rule": "mean"},
)


def choose_aggregation(logits: np.ndarray, study: np.ndarray, study_labels: np.ndarray, classes: list[str],
                       base: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The candidate rule (with ``base``'s other keys, e.g. ``min_lung_fraction``) and temperature with the lowest
    study-level NLL on these (validation) studies: the study decision is fitted like the temperature, on data the
    weights never trained on, rather than fixed at k = 5 whatever the length of the scans."""
    scored = []
    for candidate in AGGREGATION_CANDIDATES:
        aggregation = {**{k: v for k, v in base.items() if k not in ("rule", "k", "fraction")}, **candidate}
        temperature, nll = _fit(logits, study, study_labels, classes, aggregation)
        scored.append((nll, aggregation, temperature))
    nll, aggregation, temperature = min(scored, key=lambda row: row[0])
    return aggregation, temperature


#: Log-odds offsets tried for the shifted class, in steps of 0.05 nats.
PRIOR_SHIFTS = np.round(np.arange(-3.0, 3.0001, 0.05), 2)


def fit_prior_shift(probs: np.ndarray, labels: np.ndarray, classes: list[str], shifted: str = "NP") -> float:
    """The offset of ``PRIOR_SHIFTS`` for class ``shifted`` that minimises the NLL of these study probability vectors
    (N, K) against their classes; 0 wins ties, so the prior moves only where the data ask for it."""
    nlls = [negative_log_likelihood(shift_prior(probs, classes, {shifted: float(b)}), labels)
            for b in PRIOR_SHIFTS]
    best = min(nlls)
    return float(min((b for b, nll in zip(PRIOR_SHIFTS, nlls) if nll <= best + 1e-12), key=abs))


def held_out_prior_shifts(folds: list[tuple[np.ndarray, np.ndarray]], classes: list[str],
                          shifted: str = "NP") -> tuple[list[float], list[np.ndarray]]:
    """Nested estimate of what a prior shift does on unseen anatomy. ``folds``: per cross-validation fold, its
    held-out studies' (probabilities (N, K), classes (N,)). Returns per fold the offset fitted on the *other* folds
    and this fold's probabilities shifted by it."""
    offsets, shifted_probs = [], []
    for i, (probs, _) in enumerate(folds):
        others = [f for j, f in enumerate(folds) if j != i]
        offset = fit_prior_shift(np.concatenate([p for p, _ in others]), np.concatenate([y for _, y in others]),
                                 classes, shifted)
        offsets.append(offset)
        shifted_probs.append(shift_prior(probs, classes, {shifted: offset}))
    return offsets, shifted_probs


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """ECE of the predicted class's confidence, equal-width bins."""
    confidence, predicted = probs.max(axis=1), probs.argmax(axis=1)
    correct = (predicted == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (confidence > lo) & (confidence <= hi)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def study_scores(features: np.ndarray, study: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Each study's domain score: the mean Mahalanobis distance of its slices."""
    d = slice_distances(features, stats)
    return np.array([d[study == s].mean() for s in range(int(study.max()) + 1)])


def fit_domain(train_features: np.ndarray, val_features: np.ndarray, val_study: np.ndarray,
               quantile: float = 0.99) -> dict[str, Any]:
    """The bundle's ``domain`` block: Gaussian of the training features, threshold from validation studies."""
    lw = LedoitWolf().fit(train_features.astype(np.float64))
    stats: dict[str, Any] = {"method": "mahalanobis-pooled-conv5", "mean": lw.location_.round(6).tolist(),
                             "precision": lw.precision_.round(6).tolist()}
    scores = study_scores(val_features, val_study, stats)
    stats["threshold"] = float(np.quantile(scores, quantile)) * 1.05
    stats["validation_quantile"] = quantile
    return stats
