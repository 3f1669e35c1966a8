"""The cross-validation report: ``report.md`` + ``report.json`` + ROC curve PNGs, from :func:`run_crossval` output.

Every figure is the mean over folds with a 95% Student-t interval over folds (``training.metrics.mean_ci``). Table
"classifiers" follows the paper's Table 2 (each per-scale auxiliary classifier and the joint one, plus the
ResNet-18 baseline), at slice and study level; table "per class" follows its Table 3 (one-vs-rest per class, joint
classifier and baseline), written for tasks with more than two classes. ROC curves pool the held-out predictions of
all folds (each study is held out exactly once).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from .metrics import METRIC_NAMES, mean_ci  # noqa: E402

__all__ = ["RocCurve", "roc_panels", "summarise", "write_report"]

#: One curve of a ROC figure: (legend label, true class index per sample, class probabilities (n, K), line style).
RocCurve = tuple[str, Any, Any, str]

CI_NOTE = ("Each figure: mean over folds [95% confidence interval], the interval a Student-t interval over the "
           "per-fold values (mean +- t(0.975, n-1) * sd / sqrt(n)), clipped to [0, 1]; n = number of folds where the value is defined.")


def _rows(raw: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(row label, model label, classifier name) in table order: per-scale, joint, then the baselines."""
    first = raw["folds"][0]["models"]
    rows = []
    for label, entry in first.items():
        names = list(entry["metrics"]["slice"])
        if len(names) > 1:
            rows += [(f"{label} {n}", label, n) for n in names if n != "joint"] + [(f"{label} joint", label, "joint")]
        else:
            rows.append((label, label, "joint"))
    return rows


def summarise(raw: dict[str, Any]) -> dict[str, Any]:
    """Per-fold metrics -> ``{"classifiers": {row: {level: {metric: CI}}}, "per_class": {model: {level: {class:
    {metric: CI}}}}}`` (CIs as dicts)."""
    classifiers: dict[str, Any] = {}
    for row, label, name in _rows(raw):
        classifiers[row] = {
            level: {m: mean_ci([f["models"][label]["metrics"][level][name]["summary"][m] for f in raw["folds"]]).to_dict()
                    for m in METRIC_NAMES}
            for level in ("slice", "study")}
    per_class: dict[str, Any] = {}
    for label in raw["folds"][0]["models"]:
        per_class[label] = {
            level: {c: {m: mean_ci([f["models"][label]["metrics"][level]["joint"]["per_class"][c][m]
                                    for f in raw["folds"]]).to_dict()
                        for m in METRIC_NAMES if m != "accuracy"}
                    for c in raw["classes"]}
            for level in ("slice", "study")}
    return {"classifiers": classifiers, "per_class": per_class}


def _fmt(ci: dict[str, Any]) -> str:
    if ci["n"] == 0 or ci["mean"] != ci["mean"]:
        return "n/a"
    return f"{ci['mean']:.3f} [{ci['lo']:.3f}, {ci['hi']:.3f}]"


def roc_panels(curves: Sequence[RocCurve], classes: Sequence[str], path: str | Path, level: str) -> dict[str, Any]:
    """One-vs-rest ROC curves, one panel per positive class (the second class only, for two classes), written to
    ``path`` as PNG. The one ROC drawing of the project: the cross-validation report and the model registry's
    new-vs-active figure (``webapp.retraining.evaluation``) both call it.

    A curve whose samples hold only one side of a panel's split has no ROC; the panel says so. Returns
    ``{positive class: {curve label: AUC or None}}``.
    """
    classes = list(classes)
    positives = [classes[1]] if len(classes) == 2 else classes
    fig, axes = plt.subplots(1, len(positives), figsize=(5 * len(positives), 4.6), squeeze=False)
    aucs: dict[str, Any] = {}
    for ax, positive in zip(axes[0], positives):
        c = classes.index(positive)
        aucs[positive] = {}
        notes = 0
        for label, truth, probs, style in curves:
            y = np.asarray(truth) == c
            if y.all() or not y.any():
                aucs[positive][label] = None
                ax.text(0.5, 0.1 + 0.05 * notes, f"{label}: one class only", ha="center", fontsize=7)
                notes += 1
                continue
            scores = np.asarray(probs)[:, c]
            fpr, tpr, _ = roc_curve(y, scores)
            aucs[positive][label] = auc = float(roc_auc_score(y, scores))
            ax.plot(fpr, tpr, style, label=f"{label} (AUC {auc:.3f})")
        ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
        ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{positive} vs rest, {level} level",
               xlim=(0, 1), ylim=(0, 1.01))
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return aucs


def _roc_figure(roc: dict[str, Any], classes: list[str], level: str, path: Path) -> None:
    """Every model's classifiers at ``level`` (pooled held-out predictions): joint solid, per-scale dotted."""
    curves = [(label if len(by_level[level]) == 1 else f"{label} {name}", pred["labels"], pred["probs"],
               "-" if name == "joint" else ":")
              for label, by_level in roc.items() for name, pred in by_level[level].items()]
    roc_panels(curves, classes, path, level)


def write_report(raw: dict[str, Any], out_dir: str | Path, title: str, setup: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md and roc_slice.png / roc_study.png into ``out_dir``; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(raw)
    classes = list(raw["classes"])
    figures = []
    for level in ("slice", "study"):
        _roc_figure(raw["roc"], classes, level, out / f"roc_{level}.png")
        figures.append(f"roc_{level}.png")
    doc = {"title": title, "setup": setup, "classes": classes, "ci_method": CI_NOTE, **summary,
           "folds": raw["folds"], "figures": figures}
    (out / "report.json").write_text(json.dumps(doc, indent=1, default=float) + "\n")

    lines = [f"# {title}", "", CI_NOTE, "",
             "Summary metrics: for a two-class task the positive class is the second one "
             f"({classes[-1] if len(classes) == 2 else 'n/a'}); for more classes, the macro mean of the one-vs-rest "
             "figures. Study level: slice probabilities aggregated with each fold's study rule and temperature, "
             "chosen on its validation studies as a shipped bundle's are (inference.pipeline.aggregate; "
             "folds.json: study_rule).", ""]
    lines += ["## Setup", "", "```json", json.dumps(setup, indent=1, default=float), "```", ""]
    for level in ("slice", "study"):
        lines += [f"## Classifiers, {level} level (paper Table 2)", "",
                  "| classifier | " + " | ".join(METRIC_NAMES) + " |", "|---" * (len(METRIC_NAMES) + 1) + "|"]
        for row, cis in summary["classifiers"].items():
            lines.append(f"| {row} | " + " | ".join(_fmt(cis[level][m]) for m in METRIC_NAMES) + " |")
        lines.append("")
    if len(classes) > 2:
        names = [m for m in METRIC_NAMES if m != "accuracy"]
        for label, by_level in summary["per_class"].items():
            for level in ("slice", "study"):
                lines += [f"## Per class, one vs rest, {label} joint, {level} level (paper Table 3)", "",
                          "| class | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
                for c in classes:
                    lines.append(f"| {c} | " + " | ".join(_fmt(by_level[level][c][m]) for m in names) + " |")
                lines.append("")
    lines += ["## Folds", "", "| fold | train studies | val studies | test studies | test slices | model | iterations "
              "| best (stage, iter, val acc) | wall s |", "|---" * 9 + "|"]
    for f in raw["folds"]:
        for label, entry in f["models"].items():
            b, t = entry["train"]["best"], entry["train"]
            best = f"{b.get('stage')}, {b.get('iter')}, {b.get('val_acc') if b.get('val_acc') is None else round(b['val_acc'], 3)}"
            lines.append(f"| {f['fold']} | {f['n_train_studies']} | {f['n_val_studies']} | {f['n_test_studies']} | "
                         f"{f['n_test_slices']} | {label} | {t['iterations']} | {best} | {t['wall_s']} |")
    lines += ["", "## ROC curves (held-out predictions of all folds pooled)", ""]
    lines += [f"![{name}]({name})" for name in figures]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return doc
