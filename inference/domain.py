"""Is this study like the ones the model learned from? A Mahalanobis distance in the model's own feature space.

Why: a classifier answers every input with confident-looking probabilities, an abdomen scan or an 8-bit screenshot
included. Each analysed slice's Conv5 features (global average pooled, ``ClassifierOutput.pooled``) are compared with
a Gaussian fitted on the training slices (mean and shrunk inverse covariance, ``training.calibration.fit_domain``);
the study's score is the mean Mahalanobis distance of its deciding slices. A score above the bundle's threshold
(chosen on validation studies) flags the study as outside the model's experience, and the app says the AI result
is unreliable. A study whose lungs were not found at all is flagged whatever its score: the classifier was never
meant to see it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["slice_distances", "assess"]


def slice_distances(features: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Mahalanobis distance of each row of ``features`` (n, d) to the bundle's training feature distribution."""
    mean = np.asarray(stats["mean"], dtype=np.float64)
    precision = np.asarray(stats["precision"], dtype=np.float64)
    centred = np.asarray(features, dtype=np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, precision, centred), 0.0))


def assess(features: np.ndarray, stats: dict[str, Any] | None, lungs_found: bool = True) -> dict[str, Any] | None:
    """``{"score", "threshold", "outside"}`` for a study's deciding-slice features; None without domain stats."""
    if not stats:
        return None
    score = float(slice_distances(features, stats).mean()) if len(features) else float("inf")
    threshold = float(stats["threshold"])
    return {"score": round(score, 4) if np.isfinite(score) else 1e9, "threshold": round(threshold, 4),
            "outside": bool(score > threshold or not lungs_found)}
