"""Is this study like the ones the model learned from? A Mahalanobis distance in the model's own feature space.

Why: a classifier answers every input with confident-looking probabilities, an abdomen scan or an 8-bit screenshot
included. Each analysed slice's Conv5 features (global average pooled, ``ClassifierOutput.pooled``) are compared with
a Gaussian fitted on the training slices (mean and shrunk inverse covariance, ``training.calibration.fit_domain``);
the study's score is the mean Mahalanobis distance of its deciding slices. A score above the bundle's threshold
(chosen on validation studies) flags the study as outside the model's experience, and the app says the AI result
is unreliable. A study whose lungs were not found at all is flagged whatever its score: the classifier was never
meant to see it. So is a study whose kind of pixel values the model never learned from: 8-bit display images
(no Hounsfield units) given to a model trained on HU CT, or HU CT given to one trained on 8-bit images
(:func:`trained_on_hu`). The features alone missed one of the two unseen real scans shown as 8-bit images
(``python -m training check-real``, model card).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["slice_distances", "assess", "trained_on_hu"]

#: Training sources (``training`` CLI ``--source``) whose slices are 8-bit display images rather than HU.
IMAGE_SOURCES = frozenset({"images"})


def trained_on_hu(meta: dict[str, Any]) -> bool:
    """Whether a bundle learned from HU CT (every source but 8-bit images; bundles that do not say: HU, as the
    shipped ones are)."""
    return str(meta.get("training", {}).get("source", "")) not in IMAGE_SOURCES


def slice_distances(features: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    """Mahalanobis distance of each row of ``features`` (n, d) to the bundle's training feature distribution."""
    mean = np.asarray(stats["mean"], dtype=np.float64)
    precision = np.asarray(stats["precision"], dtype=np.float64)
    centred = np.asarray(features, dtype=np.float64) - mean
    return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", centred, precision, centred), 0.0))


def assess(features: np.ndarray, stats: dict[str, Any] | None, lungs_found: bool = True,
           familiar_input: bool = True) -> dict[str, Any] | None:
    """``{"score", "threshold", "outside"}`` for a study's deciding-slice features; None without domain stats.

    ``lungs_found`` False or ``familiar_input`` False (the study's pixel values are not the kind the model learned
    from, HU or 8-bit) flag the study whatever its score."""
    if not stats:
        return None
    score = float(slice_distances(features, stats).mean()) if len(features) else float("inf")
    threshold = float(stats["threshold"])
    return {"score": round(score, 4) if np.isfinite(score) else 1e9, "threshold": round(threshold, 4),
            "outside": bool(score > threshold or not lungs_found or not familiar_input)}
