"""Where the disease is: lungs, severity, saliency and boxes scored against a known truth on held-out real anatomy.

    .venv/bin/python bench/localisation.py [--model default] [--per-class 4] [--out bench/out/localisation.json]

Studies: the real backgrounds the shipped models never trained on (LIDC-IDRI-0003, Lung_Dx-A0002; ``--backgrounds``)
and fresh phantom patients, each with freshly simulated COVID-19 and CAP lesions of random extent (and NP studies
with confounders), through a random scanner (``training.simulate``), then the whole ``inference.pipeline.analyze``
with its default lung method. Printed, against the simulator's voxel truth:

* lungs: Dice of the pipeline's lung mask and the fraction of lesion voxels inside it;
* severity: percentage of opacity (PO) and the infection % (the opacity of the slices called diseased) against the
  true lesion percentage of the lung: mean absolute errors;
* saliency: the pointing game (the map's maximum inside a lesion: the largest magnitude of the joint map and of each
  scale's Integrated Gradients, the largest value of each CAM) on every explained slice that has a lesion; the
  maps are the pipeline's, zero outside its lung mask; ``random_in_lungs`` is the chance a random lung pixel of
  the same slices is a lesion pixel, the pointing game of a map that knows nothing; ``random_in_opacity`` the
  chance a random pixel the HU opacity measure labels is a lesion pixel (a random lung pixel where it labels
  none): what a map that knew only the opacities would score, so a saliency map earns its place above it;
* boxes: recall of the true lesion components (8-connected, at least 20 mm^2) at IoU >= 0.3, and false boxes (IoU
  < 0.3 with every true component) per lung slice; ``by_component_size``: per size of the true component, its
  recall, the share of its pixels the opacity measure labels, and how many any opacity component's box (whatever
  its size) would find at IoU 0.3, the ceiling of boxes drawn from the opacity labels;
* classification of these studies (3-way accuracy).
The truth comes from the same simulator as part of the training data, but these backgrounds and lesions were never
seen: the figures measure generalisation to new anatomy, not to new disease; say so wherever they are quoted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.bundle import load_bundle  # noqa: E402
from inference.io import Volume  # noqa: E402
from inference.pipeline import analyze  # noqa: E402
from training.simulate.backgrounds import TRUTH_VERSION, background, simulate  # noqa: E402

MAPS = ("joint", "conv3", "conv4", "conv5", "cam3", "cam4", "cam5")
#: Size classes (mm^2) of the true lesion components in ``by_component_size``.
SIZE_EDGES_MM2 = (20.0, 100.0, 300.0, 700.0, 2000.0, float("inf"))
#: True lesion components smaller than this (mm^2 in the slice) are not counted for box recall.
TRUTH_MIN_AREA_MM2 = 20.0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def _components(mask2d: np.ndarray, min_px: int = 1) -> list[tuple[tuple[int, int, int, int], np.ndarray]]:
    """The 8-connected components of at least ``min_px`` pixels: (box (x0, y0, x1, y1), pixels inside the box)."""
    labels, _ = ndimage.label(mask2d, structure=np.ones((3, 3), dtype=bool))
    out = []
    for i, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is not None and int((pixels := labels[found] == i).sum()) >= min_px:
            out.append(((found[1].start, found[0].start, found[1].stop - 1, found[0].stop - 1), pixels))
    return out


def _by_size(rows: list[tuple[float, bool, float, bool]]) -> list[dict]:
    """(area mm^2, found by a box, share labelled opacity, found by any opacity component) per size class."""
    out = []
    for lo, hi in zip(SIZE_EDGES_MM2, SIZE_EDGES_MM2[1:]):
        inside = [r for r in rows if lo <= r[0] < hi]
        if inside:
            out.append({"area_mm2": [lo, hi if hi != float("inf") else None], "components": len(inside),
                        "box_recall_iou30": round(float(np.mean([r[1] for r in inside])), 4),
                        "opacity_labelled": round(float(np.mean([r[2] for r in inside])), 4),
                        "any_opacity_component_iou30": round(float(np.mean([r[3] for r in inside])), 4)})
    return out


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / float(area(a) + area(b) - inter)


def _maps(slice_maps) -> dict[str, np.ndarray]:
    out = {"joint": slice_maps.joint}
    out.update({f"conv{i + 3}": m for i, m in enumerate(slice_maps.ig)})
    out.update({f"cam{i + 3}": m for i, m in enumerate(slice_maps.cams)})
    return out


def run(model: str, specs: list[str], per_class: int, seed: int) -> dict:
    bundle = load_bundle(model, device="cpu")
    classes = bundle.classes
    studies, hits, chance, opacity_chance = [], {m: [] for m in MAPS}, [], []
    recall_hits = recall_total = false_boxes = lung_slices = 0
    components: list[tuple[float, bool, float, bool]] = []
    t0 = time.time()
    for spec in specs:
        bg = background(spec)
        for i in range(per_class):
            for c, label in enumerate(classes):
                rng = np.random.default_rng([seed, i, c, sum(map(ord, spec))])
                extent = float(np.exp(rng.uniform(np.log(0.02), np.log(0.6)))) if label != "NP" else None
                sample, findings = simulate(rng, bg, label, extent=extent)
                volume = Volume(array=sample.hu.astype(np.float32), kind="nifti", is_hu=True,
                                spacing_mm=sample.spacing_mm)
                result = analyze(volume, bundle, saliency="positive")
                truth_pct = 100.0 * sample.lesion.sum() / max(1, sample.lung.sum())
                lesion = sample.lesion
                pixel = sample.spacing_mm[1]
                min_px = max(4, int(round(TRUTH_MIN_AREA_MM2 / (pixel * pixel))))
                for s in result.slices:
                    lung_slices += 1
                    truth = _components(lesion[s.index], min_px)
                    predicted = [(b.x0, b.y0, b.x1, b.y1) for b in s.boxes]
                    opaque = result.opacity_mask[s.index] > 0
                    opacity_boxes = [box for box, _ in _components(opaque)] if truth else []
                    found = [any(_iou(t, p) >= 0.3 for p in predicted) for t, _ in truth]
                    for (box, pixels), hit in zip(truth, found):
                        x0, y0, x1, y1 = box
                        components.append((float(pixels.sum()) * pixel * pixel, hit,
                                           float(opaque[y0:y1 + 1, x0:x1 + 1][pixels].mean()),
                                           any(_iou(box, o) >= 0.3 for o in opacity_boxes)))
                    recall_total += len(truth)
                    recall_hits += sum(found)
                    false_boxes += sum(not any(_iou(p, t) >= 0.3 for t, _ in truth) for p in predicted)
                    if s.index in result.maps and lesion[s.index].any():
                        lungs_k = result.lung_mask[s.index]
                        chance.append(float(lesion[s.index][lungs_k].mean()) if lungs_k.any() else 0.0)
                        labelled = opaque & lungs_k
                        opacity_chance.append(float(lesion[s.index][labelled].mean()) if labelled.any()
                                              else chance[-1])
                        for name, m in _maps(result.maps[s.index]).items():
                            # IG and the joint map by magnitude (the paper's |.|); a CAM by its largest class
                            # evidence (its strongest negative values are evidence against the class)
                            score = np.where(lungs_k, m if name.startswith("cam") else np.abs(m), -np.inf)
                            peak = np.unravel_index(int(np.argmax(score)), m.shape)
                            hits[name].append(bool(lesion[s.index][peak]))
                studies.append({
                    "background": bg.name, "label": label, "findings": findings, "predicted": result.label,
                    "truth_percent": round(float(truth_pct), 3),
                    "opacity_percent": (result.opacity or {}).get("percent"),
                    "infection_percent": round(float(result.infection_percent), 3),
                    "lung_dice": round(_dice(result.lung_mask, sample.lung), 4),
                    "lesion_in_lungs": round(float((result.lung_mask & lesion).sum() / lesion.sum()), 4)
                    if lesion.any() else None,
                    "outside": (result.domain or {}).get("outside")})
    errors = [abs(s["opacity_percent"] - s["truth_percent"]) for s in studies if s["opacity_percent"] is not None]
    inside = [s["lesion_in_lungs"] for s in studies if s["lesion_in_lungs"] is not None]
    return {
        "model": {"name": bundle.name, "version": bundle.version}, "backgrounds": specs, "studies": len(studies),
        "truth_version": TRUTH_VERSION,  # the backgrounds' lung truth: draws of another version are other studies
        "seconds": round(time.time() - t0, 1),
        "classification_accuracy": round(float(np.mean([s["predicted"] == s["label"] for s in studies])), 4),
        "lung_dice_mean": round(float(np.mean([s["lung_dice"] for s in studies])), 4),
        "lesion_in_lungs_mean": round(float(np.mean(inside)), 4) if inside else None,
        "opacity_mae_points": round(float(np.mean(errors)), 3) if errors else None,
        "infection_mae_points": round(float(np.mean([abs(s["infection_percent"] - s["truth_percent"])
                                                     for s in studies])), 3),
        "pointing_game": {m: (round(float(np.mean(v)), 4) if v else None) for m, v in hits.items()},
        "pointing_slices": len(hits["joint"]),
        "pointing_random_in_lungs": round(float(np.mean(chance)), 4) if chance else None,
        "pointing_random_in_opacity": round(float(np.mean(opacity_chance)), 4) if opacity_chance else None,
        "box_recall_iou30": round(recall_hits / recall_total, 4) if recall_total else None,
        "false_boxes_per_lung_slice": round(false_boxes / max(1, lung_slices), 4),
        "by_component_size": _by_size(components),
        "outside_flagged": int(sum(bool(s["outside"]) for s in studies)),
        "per_study": studies,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--backgrounds", default="LIDC-IDRI-0003,Lung_Dx-A0002")
    p.add_argument("--phantom-patients", type=int, default=2)
    p.add_argument("--per-class", type=int, default=3)
    p.add_argument("--seed", type=int, default=4242)
    p.add_argument("--out", type=Path, default=Path("bench/out/localisation.json"))
    a = p.parse_args()
    specs = [s for s in a.backgrounds.split(",") if s] + [f"phantom:{977_000 + j}" for j in range(a.phantom_patients)]
    report = run(a.model, specs, a.per_class, a.seed)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "per_study"}, indent=1))
    print(f"figures written to {a.out}")


if __name__ == "__main__":
    main()
