"""Checks on real scans from ``../shared/data`` through the whole pipeline, as a user would run them.

``python -m training check-real --model default`` analyses every real chest CT in the shared folder with the
bundle and prints, per scan, the expected and predicted class, P(NP), the domain score and flag and the opacity %:

* the real non-pneumonia scans (LIDC-IDRI lung-cancer screening, Lung-PET-CT-Dx) must come out NP; each is marked
  ``seen`` when the bundle used it as a background in training (``training.backgrounds`` in model.json), since only
  the unseen ones are a fair test;
* the RICORD COVID-19 positive slabs must come out COVID; the negative slabs are "COVID-19 negative" (a negative
  test, not a normal chest), so they are expected *not* COVID;
* the domain check must flag what the model was never meant to see (a non-chest CT, 8-bit display images given to an
  HU model) and stay quiet on real chest CT: its AUROC over these is reported.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.bundle import Bundle
from inference.io import Volume, load_study
from inference.pipeline import analyze

from .simulate.backgrounds import REAL_BACKGROUNDS, series_folder, shared_data_dir

__all__ = ["RealScan", "REAL_SCANS", "OUTSIDE_SCANS", "check_real", "domain_auroc", "format_table"]


@dataclass(frozen=True)
class RealScan:
    name: str
    path: str  # under shared data's real-ct/
    expected: str  # "NP", "COVID", or "not COVID"


REAL_SCANS: tuple[RealScan, ...] = (
    *(RealScan(name, rel, "NP") for name, (_, rel) in REAL_BACKGROUNDS.items()),
    *(RealScan(f"RICORD-positive-{i}", f"ricord-slabs/covid-positive/patient_{i}", "COVID") for i in (1, 2, 3)),
    *(RealScan(f"RICORD-negative-{i}", f"ricord-slabs/covid-negative/patient_{i}", "not COVID")
      for i in (1, 2, 3, 4, 5)),
)
#: Inputs the model must flag as outside its experience.
OUTSIDE_SCANS: tuple[RealScan, ...] = (
    RealScan("abdomen CT (no lungs)", "totalsegmentator-abdomen-j2k/example_ct_dicom", "outside"),
)


def _load(folder: Path) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_study(series_folder(folder))


def _row(scan: RealScan, volume: Volume, bundle: Bundle, seen: bool) -> dict[str, Any]:
    result = analyze(volume, bundle, saliency="none")
    p_np = result.probabilities.get("NP", float("nan"))
    if scan.expected == "not COVID":
        ok = result.label != "COVID"
    elif scan.expected == "outside":
        ok = bool(result.domain and result.domain["outside"])
    else:
        ok = result.label == scan.expected
    return {"scan": scan.name, "expected": scan.expected, "seen_in_training": seen, "label": result.label,
            "p_np": round(float(p_np), 4), "probabilities": result.probabilities,
            # the classifier's own vector where the bundle decided with the opacity too (inference.opacity_fusion)
            "classifier_probabilities": result.classifier_probabilities, "ok": bool(ok),
            "domain": result.domain, "opacity_percent": (result.opacity or {}).get("percent"),
            "slices": volume.n_slices}


def _eight_bit(volume: Volume) -> Volume:
    """The same scan as an 8-bit display image series (lung window), as UCSD-style figures are: no HU."""
    display = np.clip((volume.array + 1350.0) / 1500.0, 0.0, 1.0) * 255.0
    return Volume(array=display.astype(np.float32), kind="image", is_hu=False, spacing_mm=volume.spacing_mm)


def check_real(bundle: Bundle, root: Path | None = None) -> dict[str, Any]:
    """Every real scan present under the shared folder through ``analyze``; rows and a summary."""
    root = (root or shared_data_dir()) / "real-ct"
    seen = set(str(bundle.meta.get("training", {}).get("backgrounds") or "").split(","))
    rows, outside_rows = [], []
    for scan in REAL_SCANS:
        if (root / scan.path).is_dir():
            rows.append(_row(scan, _load(root / scan.path), bundle, scan.name in seen))
    for scan in OUTSIDE_SCANS:
        if (root / scan.path).is_dir():
            outside_rows.append(_row(scan, _load(root / scan.path), bundle, False))
    for name in ("LIDC-IDRI-0003", "Lung_Dx-A0002"):  # unseen real chest CT, shown as 8-bit display images
        rel = REAL_BACKGROUNDS[name][1]
        if (root / rel).is_dir():
            volume = _eight_bit(_load(root / rel))
            outside_rows.append(_row(RealScan(f"{name} as 8-bit images", rel, "outside"), volume, bundle, False))
    unseen = [r for r in rows if not r["seen_in_training"]]
    summary = {
        "unseen_real_np_correct": _fraction([r for r in unseen if r["expected"] == "NP"]),
        "unseen_real_3way_accuracy": _fraction([r for r in unseen if r["expected"] in ("NP", "COVID")]),
        "ricord_positive_covid": _fraction([r for r in rows if r["expected"] == "COVID"]),
        "ricord_negative_not_covid": _fraction([r for r in rows if r["expected"] == "not COVID"]),
        "outside_flagged": _fraction(outside_rows),
        "real_chest_flagged_outside": sum(bool(r["domain"] and r["domain"]["outside"]) for r in rows),
        "domain_auroc": domain_auroc(rows, outside_rows),
    }
    return {"model": {"name": bundle.name, "version": bundle.version}, "summary": summary, "scans": rows,
            "outside": outside_rows}


def _fraction(rows: list[dict[str, Any]]) -> str:
    return f"{sum(r['ok'] for r in rows)}/{len(rows)}"


def domain_auroc(inside: list[dict[str, Any]], outside: list[dict[str, Any]]) -> float | None:
    """AUROC of the domain score separating inputs outside the model's experience from real chest CT."""
    from sklearn.metrics import roc_auc_score

    scores = [(r["domain"]["score"], 0) for r in inside if r["domain"]] + \
             [(r["domain"]["score"], 1) for r in outside if r["domain"]]
    labels = [y for _, y in scores]
    if len(set(labels)) < 2:
        return None
    return round(float(roc_auc_score(labels, [s for s, _ in scores])), 4)


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table (model card and terminal)."""
    lines = ["| scan | expected | seen in training | AI label | P(NP) | classifier alone: label (P(NP)) | "
             "domain score / threshold | outside | opacity % | ok |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["scans"] + report["outside"]:
        d, alone = r["domain"] or {}, r.get("classifier_probabilities")
        own = f"{max(alone, key=alone.get)} ({alone.get('NP', float('nan')):.2f})" if alone else "same"
        lines.append(f"| {r['scan']} | {r['expected']} | {'yes' if r['seen_in_training'] else 'no'} | {r['label']} | "
                     f"{r['p_np']:.2f} | {own} | "
                     f"{d.get('score', float('nan')):.1f} / {d.get('threshold', float('nan')):.1f} | "
                     f"{'yes' if d.get('outside') else 'no'} | {r['opacity_percent']} | {'yes' if r['ok'] else 'NO'} |")
    lines.append("")
    lines.append(json.dumps(report["summary"]))
    return "\n".join(lines)


def main_check(model: str, out: Path | None) -> dict[str, Any]:
    from inference.bundle import load_bundle

    report = check_real(load_bundle(model, device="cpu"))
    print(format_table(report))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1, default=float) + "\n")
    return report

