"""Side-by-side evaluation of a freshly trained version and the active one on the same held-out studies.

``training.retrain`` holds out studies (grouped by patient) with ``group_split`` and reports the new model's
figures on them, but not which studies they were. The split is a pure function of the prepared data and the seed,
so it is recomputed here with the same functions; both versions are then scored by the same code
(``training.crossval.predictions`` / ``score``) on those studies, and one ROC figure overlays their curves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from inference.bundle import Bundle, load_bundle  # noqa: E402
from training.crossval import predictions, score  # noqa: E402
from training.datasets import PrepConfig, StudyRecord, build_slice_set, export_studies, group_split  # noqa: E402
from training.retrain import RetrainConfig, summary_metrics  # noqa: E402


def prep_for(bundle: Bundle, base: PrepConfig) -> PrepConfig:
    """How ``bundle`` wants its slices prepared (its model.json), with the slice selection of ``base``."""
    return PrepConfig(size=int(bundle.meta["input_size"][0]), margin=float(bundle.meta["crop"]["margin"]),
                      normalization=tuple(bundle.meta["normalization"].items()),
                      min_lung_fraction=base.min_lung_fraction, max_slices=base.max_slices, lungs=base.lungs)


def _predict(bundle: Bundle, records: list[StudyRecord], prep: PrepConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    data = build_slice_set(records, tuple(bundle.classes), prep_for(bundle, prep))
    pred = predictions(bundle.model, data, dict(bundle.meta["aggregation"]))
    return pred, summary_metrics(score(pred, data.classes))


def held_out_ids(export_dir: Path, classes: tuple[str, ...], config: RetrainConfig, prep: PrepConfig) -> list[str]:
    """The study ids ``retrain`` held out (same data preparation, same split function and seed)."""
    data = build_slice_set(export_studies(export_dir), classes, prep)
    _, test = group_split(data.study_labels, data.groups, config.test_fraction, seed=config.train.seed)
    return [data.study_ids[i] for i in test]


def roc_figure(curves: dict[str, dict[str, Any]], classes: list[str], path: Path) -> None:
    """Study-level one-vs-rest ROC of each version's joint classifier, one panel per positive class."""
    positives = [classes[1]] if len(classes) == 2 else classes
    fig, axes = plt.subplots(1, len(positives), figsize=(4.6 * len(positives), 4.2), squeeze=False)
    for ax, positive in zip(axes[0], positives):
        c = classes.index(positive)
        for name, pred in curves.items():
            y = np.asarray(pred["study"]["labels"]) == c
            scores = np.asarray(pred["study"]["probs"]["joint"])[:, c]
            if y.all() or not y.any():
                ax.text(0.5, 0.1, f"{name}: one class only in the held-out studies", ha="center", fontsize=7)
                continue
            fpr, tpr, _ = roc_curve(y, scores)
            ax.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, scores):.3f})")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{positive} vs rest (study level)",
               xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
