"""Side-by-side evaluation of a freshly trained version and the active one on the same held-out studies.

``training.retrain`` holds out studies (grouped by patient) with ``group_split`` and reports the new model's
figures on them, but not which studies they were. The split is a pure function of the prepared data and the seed,
so it is recomputed here with the same functions; both versions are then scored by the same code
(``training.crossval.predictions`` / ``score``) on those studies, and one ROC figure overlays their curves, drawn
by ``training.report.roc_panels`` like the cross-validation report's.

Imported by the training task only (``webapp.retraining.training.run_training``): it loads torch and scikit-learn.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from inference.bundle import Bundle, load_bundle
from training.crossval import predictions, score
from training.datasets import PrepConfig, StudyRecord, build_slice_set, export_studies, group_split
from training.report import roc_panels
from training.retrain import RetrainConfig, summary_metrics


def prep_for(bundle: Bundle, base: PrepConfig) -> PrepConfig:
    """How ``bundle`` wants its slices prepared (its model.json: size, crop, blanking, normalisation), with the slice
    selection of ``base``, as ``training.retrain`` prepares a start bundle's."""
    return PrepConfig.for_bundle(bundle.meta, min_lung_fraction=base.min_lung_fraction, max_slices=base.max_slices,
                                 lungs=base.lungs)


def _predict(bundle: Bundle, records: list[StudyRecord], prep: PrepConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    data = build_slice_set(records, tuple(bundle.classes), prep_for(bundle, prep))
    pred = predictions(bundle.model, data, dict(bundle.meta["aggregation"]))
    return pred, summary_metrics(score(pred, data.classes))


def held_out_ids(export_dir: Path, classes: tuple[str, ...], config: RetrainConfig, prep: PrepConfig) -> list[str]:
    """The study ids ``retrain`` held out (same data preparation, same split function and seed)."""
    data = build_slice_set(export_studies(export_dir), classes, prep)
    _, test = group_split(data.study_labels, data.groups, config.test_fraction, seed=config.train.seed)
    return [data.study_ids[i] for i in test]


def roc_figure(curves: dict[str, dict[str, Any]], classes: list[str], path: Path) -> dict[str, Any]:
    """Study-level one-vs-rest ROC of each version's joint classifier (``curves``: version name -> predictions as
    ``training.crossval.predictions`` returns them), one panel per positive class; returns the AUCs."""
    return roc_panels([(name, pred["study"]["labels"], pred["study"]["probs"]["joint"], "-")
                       for name, pred in curves.items()], classes, path, level="study")


def compare(export_dir: Path, config: RetrainConfig, new_bundle_dir: Path, active_path: str | None,
            roc_path: Path) -> dict[str, Any]:
    """Score the new bundle and (when its classes match) the active one on the held-out studies; draw the ROC."""
    new = load_bundle(new_bundle_dir, device="cpu")
    prep = prep_for(new, config.prep)
    ids = set(held_out_ids(export_dir, tuple(new.classes), config, prep))
    records = [r for r in export_studies(export_dir) if r.study_id in ids]
    result: dict[str, Any] = {"held_out_studies": sorted(ids), "new": None, "active": None, "active_note": ""}
    if not records:
        result["active_note"] = "no held-out studies"
        return result
    new_pred, result["new"] = _predict(new, records, config.prep)
    curves = {"new": new_pred}
    if active_path:
        active = load_bundle(active_path, device="cpu")
        if active.classes == new.classes:
            curves["active"], result["active"] = _predict(active, records, config.prep)
        else:
            result["active_note"] = f"the active version predicts {active.classes}, not {new.classes}"
    roc_figure(curves, list(new.classes), roc_path)
    return result
