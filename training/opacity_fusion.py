"""``python -m training opacity-fusion``: fit a bundle's study decision on the classifier and the HU opacity together
(``inference.opacity_fusion``) on a leave-one-background-out cross-validation's held-out studies.

1. Every held-out study named in ``folds.json`` is made again (``training.simulate.backgrounds.record_from_id``)
   and its opacity measured exactly as the pipeline measures it (``inference.pipeline.study_opacity``: its lungs,
   slices and HU measure); the figures are kept in the crossval folder (``opacity.json``), a second or two a study.
2. The effect is measured *nested*: each fold's studies are decided by a fusion fitted on the other folds' studies
   only, against the classifier's own decision, so the figure is not the fit's own.
3. The fusion fitted on every fold's studies is written, with ``--bundle``, to that bundle's ``model.json``
   (``opacity_fusion``, with where it came from and its nested effect).

The features (``inference.opacity_fusion.FEATURES``) and the L2 penalty (``C`` = 1, the strength scikit-learn's
logistic regression defaults to) were settled before the run the shipped fusion is fitted on, on an earlier
leave-one-background-out run (``models/default/MODEL_CARD.md`` gives what was compared and why the high-opacity
share was left out); the nested figures measure the fit, not those choices. As for ``prior-shift``: the folds'
models are not the shipped one (four backgrounds each, not five), so the fusion is an estimate of how the shipped
model's probabilities and the opacity read together on a new patient; the model card says so.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from inference.opacity_fusion import FEATURES, features, fused_probabilities
from inference.pipeline import study_opacity

from .files import written_whole
from .prior_shift import edit_bundle_meta, held_out_folds, held_out_ids, nested_figures, nested_summary
from .simulate.backgrounds import record_from_id

__all__ = ["PENALTY_C", "fit_fusion", "opacity_says_whether", "held_out_opacity", "opacity_fusion_report",
           "write_opacity_fusion"]

#: Inverse L2 strength on the coefficients (not the intercepts), as scikit-learn's ``C``.
PENALTY_C = 1.0


def fit_fusion(x: np.ndarray, labels: np.ndarray, n_classes: int, c: float = PENALTY_C,
               free: np.ndarray | None = None) -> dict[str, list]:
    """Multinomial logistic regression of ``labels`` on the rows of ``x``: minimises
    ``0.5 |coef|^2 + c * sum(-log p(label))`` (L-BFGS) over the coefficients ``free`` allows (a K x F boolean mask;
    the others stay 0; all by default) and the intercepts; returns ``{"coef": K x F, "intercept": K}``."""
    x, labels = np.asarray(x, dtype=np.float64), np.asarray(labels)
    f = x.shape[1]
    free = np.ones((n_classes, f), dtype=bool) if free is None else np.asarray(free, dtype=bool)
    onehot = np.eye(n_classes)[labels]
    n_coef = int(free.sum())

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        coef = np.zeros((n_classes, f))
        coef[free] = theta[:n_coef]
        return coef, theta[n_coef:]

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef, intercept = unpack(theta)
        z = x @ coef.T + intercept
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        residual = np.exp(log_p) - onehot
        value = 0.5 * float((coef ** 2).sum()) - c * float((log_p * onehot).sum())
        grad = np.concatenate([(coef + c * residual.T @ x)[free], c * residual.sum(axis=0)])
        return value, grad

    result = minimize(objective, np.zeros(n_coef + n_classes), jac=True, method="L-BFGS-B",
                      options={"maxiter": 10000, "ftol": 1e-13, "gtol": 1e-8})
    if not result.success:
        raise RuntimeError(f"the opacity fusion did not converge: {result.message}")
    coef, intercept = unpack(result.x)
    return {"coef": coef.round(6).tolist(), "intercept": intercept.round(6).tolist()}


def opacity_says_whether(classes: list[str]) -> np.ndarray:
    """The coefficients the shipped fusion fits (a K x (K + 1) mask over :func:`inference.opacity_fusion.features`):
    every class reads the classifier's log-probabilities; the opacity enters the NP score only, so it says whether
    there is disease, never which. Why: simulated COVID-19 ground glass is fainter than what the opacity measure
    counts (a third of its pixels, ``bench/localisation.py``) while simulated consolidation is counted whole, so
    with a free coefficient per class, "more opacity" also came to mean "CAP rather than COVID-19": a property of the
    simulator and the measure, not of the diseases (the same reason the high-opacity share is left out)."""
    if "NP" not in classes:
        raise ValueError(f"the opacity fusion needs an NP class; the classes are {classes}")
    free = np.ones((len(classes), len(classes) + 1), dtype=bool)
    free[:, -1] = False
    free[classes.index("NP"), -1] = True
    return free


def held_out_opacity(crossval_dir: Path, ids: list[str], classes: list[str]) -> dict[str, dict[str, float]]:
    """Each named study's ``{"percent", "high_percent"}`` as the pipeline measures it, read from (and added to)
    ``opacity.json`` in the crossval folder."""
    path = Path(crossval_dir) / "opacity.json"
    known: dict[str, dict[str, float]] = json.loads(path.read_text()) if path.exists() else {}
    missing = [i for i in ids if i not in known]
    for n, study_id in enumerate(missing, start=1):
        opacity = study_opacity(record_from_id(study_id, classes).volume())
        known[study_id] = {"percent": opacity["percent"], "high_percent": opacity["high_percent"]}
        if n % 25 == 0 or n == len(missing):
            print(f"opacity measured on {n}/{len(missing)} held-out studies", file=sys.stderr, flush=True)
            with written_whole(path) as out:
                out.write((json.dumps(known, indent=1) + "\n").encode())
    return known


def opacity_fusion_report(crossval_dir: Path, c: float = PENALTY_C) -> dict[str, Any]:
    """The nested before/after figures per fold and pooled, and the fusion fitted on every fold's studies."""
    classes, names, folds = held_out_folds(crossval_dir)
    ids = held_out_ids(crossval_dir)
    opacity = held_out_opacity(crossval_dir, [i for fold in ids for i in fold], classes)
    xs = [features(p, [opacity[i]["percent"] for i in fold]) for (p, _), fold in zip(folds, ids)]
    free = opacity_says_whether(classes)
    after = []
    for k in range(len(folds)):
        others = [j for j in range(len(folds)) if j != k]
        params = fit_fusion(np.concatenate([xs[j] for j in others]),
                            np.concatenate([folds[j][1] for j in others]), len(classes), c, free)
        after.append(fused_probabilities(xs[k], params))
    labels = np.concatenate([y for _, y in folds])
    fitted = fit_fusion(np.concatenate(xs), labels, len(classes), c, free)
    po = np.array([opacity[i]["percent"] for fold in ids for i in fold])
    return {"crossval": str(crossval_dir), "studies": int(labels.size), "c": c,
            "params": {"classes": classes, "features": list(FEATURES), **fitted},
            "opacity_percent_median": {cls: round(float(np.median(po[labels == j])), 3)
                                       for j, cls in enumerate(classes) if (labels == j).any()},
            "nested": nested_figures(names, folds, after, classes)}


def write_opacity_fusion(bundle_dir: Path, report: dict[str, Any], version: str | None = None) -> None:
    """Store the fitted fusion in a bundle's ``model.json`` with its source and nested effect."""
    def edit(meta: dict[str, Any]) -> None:
        meta["opacity_fusion"] = {**report["params"], "c": report["c"], **nested_summary(report)}

    edit_bundle_meta(bundle_dir, version, edit)
