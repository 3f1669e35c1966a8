"""The study decision from the classifier and the HU opacity together (a departure from the paper).

Why: on a patient it never trained on, the classifier ranks studies well but calls many healthy chests diseased, at
a level that depends on the patient (``models/default/MODEL_CARD.md``, leave one background out: the healthy
studies' P(NP) sits anywhere from 0.2 to 0.5 depending on who they are). Validation studies drawn from the training
patients cannot show that, and a constant shift of the NP prior buys healthy calls with a third of the COVID-19
detections. The percentage of the lung at opacity density (``inference.opacity``) is a physical measure with the
same scale for every patient: a healthy lung holds a few percent (dependent density, partial volume), pneumonia
more. Read together, the two separate healthy from diseased studies of a new patient better than either alone.

A bundle's ``opacity_fusion`` is a multinomial logistic regression on the study's features :func:`features`: the
classifier's study log-probabilities (after its aggregation rule, temperature and prior shift) and log(1 + PO), PO
in percent. It is fitted on a leave-one-background-out cross-validation's held-out studies, each scored by a fold
model that never saw that patient and measured by the pipeline's own lungs and opacity (``training.opacity_fusion``),
so it learns how the classifier and the measure behave on new anatomy. Not the high-opacity share (PHO / PO): on
simulated studies it tells COVID-19 from CAP (the simulator paints COVID-19 mostly as ground glass), but two of the
three real COVID-19 slabs here have the share of simulated CAP (``models/default/MODEL_CARD.md``), so it would teach
the decision the generator, not the disease. For the same reason the shipped fusion lets the opacity into the NP
score only (``training.opacity_fusion.opacity_says_whether``): the amount says whether there is disease, the
classifier which. Its output
replaces the study's probability vector; the classifier's own vector stays in the analysis JSON
(``prediction.classifier_probabilities``). Images without HU have no opacity and keep the classifier's vector, as
does a study where no lungs were found.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["FEATURES", "features", "fuse", "fused_logits", "fused_probabilities", "check_params"]

#: The feature vector's parts, in order (the classes' log-probabilities first, one per class).
FEATURES = ("log_probability", "log1p_opacity_percent")
#: Probabilities are clipped here before the logarithm (a softmax output of exactly 0 has no log).
_FLOOR = 1e-6


def check_params(params: Any, classes: Sequence[str]) -> None:
    """Raise ValueError naming what is wrong with a bundle's ``opacity_fusion`` block for these classes."""
    if not isinstance(params, Mapping) or list(params.get("classes", [])) != list(classes):
        raise ValueError(f"'opacity_fusion' must be an object fitted for the classes {list(classes)}")
    if list(params.get("features", FEATURES)) != list(FEATURES):
        raise ValueError(f"'opacity_fusion.features' must be {list(FEATURES)}")
    try:
        coef = np.asarray(params["coef"], dtype=np.float64)
        intercept = np.asarray(params["intercept"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("'opacity_fusion' needs numeric 'coef' and 'intercept'") from exc
    k = len(classes)
    if coef.shape != (k, k + 1) or intercept.shape != (k,):
        raise ValueError(f"'opacity_fusion' needs coef of shape {k} x {k + 1} and {k} intercepts, not "
                         f"{coef.shape} and {intercept.shape}")
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError("'opacity_fusion' coefficients must be finite")


def features(probabilities: np.ndarray, percent: np.ndarray | float) -> np.ndarray:
    """(n, K + 1) features of n studies: their (n, K) class probabilities' logarithms and log(1 + PO)."""
    p = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    return np.column_stack([np.log(np.clip(p, _FLOOR, 1.0)),
                            np.log1p(np.broadcast_to(np.asarray(percent, dtype=np.float64), len(p)))])


def fused_logits(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """(n, K) class scores of :func:`features` rows under a fitted ``opacity_fusion`` block."""
    coef, intercept = np.asarray(params["coef"], dtype=np.float64), np.asarray(params["intercept"], dtype=np.float64)
    if coef.shape != (intercept.size, x.shape[1]):
        raise ValueError(f"opacity_fusion: coef of shape {coef.shape} for {intercept.size} classes and "
                         f"{x.shape[1]} features")
    return x @ coef.T + intercept


def fused_probabilities(x: np.ndarray, params: Mapping[str, Any]) -> np.ndarray:
    """Softmax of :func:`fused_logits`, row by row."""
    z = fused_logits(x, params)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def fuse(study: np.ndarray, classes: Sequence[str], opacity: Mapping[str, Any], params: Mapping[str, Any]
         ) -> np.ndarray:
    """The study probability vector decided with its opacity (``opacity``: ``inference.opacity.percentages``)."""
    if list(params.get("classes", [])) != list(classes):
        raise ValueError(f"opacity_fusion was fitted for classes {params.get('classes')}, the model has {list(classes)}")
    return fused_probabilities(features(study, opacity["percent"]), params)[0].astype(np.asarray(study).dtype)
