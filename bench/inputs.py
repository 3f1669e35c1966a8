"""Benchmark: studies in the forms public data ships them: NIfTI volumes stored upside down, stacks of unrelated slices.

    .venv/bin/python bench/inputs.py [--parts orientation-real orientation-simulated stack] [--seed 2026]
                                     [--simulated 120] [--stack-slices 24] [--out bench/out/inputs.json]

* ``orientation-real``: every real scan in ``../shared`` (LIDC-IDRI, Lung-PET-CT-Dx, RICORD slabs) written as a NIfTI
  file with a placeholder affine, upright and upside down (rows reversed): whether ``inference.orientation.study_axes``
  turns it, and the analysis (``default``, no saliency: label, its probability, opacity %, lung voxels) against the
  DICOM series'; ``--before`` also analyses the upside-down files as stored (the behaviour before the check).
* ``orientation-simulated``: ``--simulated`` studies from ``training.simulate`` (the real backgrounds and phantom
  patients, CAP / COVID / NP, slabs of 40-200 mm and, every sixth, whole lungs, through a random scanner), upright and
  upside down: how many ``study_axes`` turns of each (an upright one turned is an error), and how many upright ones
  either sign alone (the dependent-lung gradient, the bone behind the lungs) would have turned.
* ``stack``: ``--stack-slices`` unrelated simulated slices with lesions (held-out backgrounds LIDC-IDRI-0003,
  Lung_Dx-A0002 and two phantom patients; one slice per study) stacked into one volume, analysed as one volume and
  each slice alone (``--before``: also as one scan, the behaviour before ``inference.slice_stack``): lung Dice, lesion
  pixels inside the lungs, opacity % error and the pointing game of the joint map.

The simulated studies come from the same simulator as part of the training data (new draws, the orientation check's
thresholds were chosen on other draws): say so wherever the figures are quoted. Not a test; writes ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import inference.orientation as orientation  # noqa: E402
import inference.slice_stack as slice_stack  # noqa: E402
from inference.bundle import Bundle, load_bundle  # noqa: E402
from inference.io import Volume, load_study  # noqa: E402
from inference.orientation import (BONE_BELOW_UPRIGHT, DEPENDENT_TURNED_HU, dependent_gradient_hu,  # noqa: E402
                                   posterior_bone_share, study_axes)
from inference.pipeline import AnalysisResult, analyze  # noqa: E402
from training.simulate.backgrounds import background, shared_data_dir, simulate  # noqa: E402

PARTS = ("orientation-real", "orientation-simulated", "stack")
SIMULATED_BACKGROUNDS = ("Lung_Dx-A0002", "LIDC-IDRI-0003", "LIDC-IDRI-0001", "Lung_Dx-A0001", "LIDC-IDRI-0002",
                         "phantom:977010", "phantom:977011", "phantom:977012")
STACK_BACKGROUNDS = ("LIDC-IDRI-0003", "Lung_Dx-A0002", "phantom:977000", "phantom:977001")


def _summary(result: AnalysisResult) -> dict:
    return {"label": result.label, "probability": round(result.probabilities[result.label], 4),
            "opacity_percent": (result.opacity or {}).get("percent"), "lung_voxels": int(result.lung_mask.sum())}


def _nifti(array: np.ndarray, spacing_mm: tuple[float, float, float], path: Path) -> Volume:
    import nibabel as nib

    dz, dy, dx = spacing_mm
    nib.save(nib.Nifti1Image(np.ascontiguousarray(array.transpose(2, 1, 0)).astype(np.int16),
                             np.diag([dx, dy, dz, 1.0])), path)
    return load_study(path)


def orientation_real(bundle: Bundle, before: bool) -> dict:
    real = shared_data_dir() / "real-ct"
    folders = sorted((real / "lidc-idri").glob("LIDC-IDRI-*")) + \
        sorted((real / "tcia-lung-pet-ct-dx" / "Lung-PET-CT-Dx").glob("Lung_Dx-*")) + \
        sorted((real / "ricord-slabs").glob("covid-*/patient_*"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            series = load_study(folder)
            name = f"{folder.parent.name}/{folder.name}"
            row = {"scan": name, "dicom": _summary(analyze(series, bundle, saliency="none"))}
            for tag, array in (("upright", series.array), ("upside_down", series.array[:, ::-1])):
                volume = _nifti(array, series.spacing_mm, Path(tmp) / f"{tag}.nii.gz")
                row[tag] = {"turned": study_axes(volume) == (1,),
                            **_summary(analyze(volume, bundle, saliency="none"))}
                if before and tag == "upside_down":
                    limit, orientation.DEPENDENT_TURNED_HU = orientation.DEPENDENT_TURNED_HU, float("inf")
                    row["upside_down_as_stored"] = _summary(analyze(volume, bundle, saliency="none"))
                    orientation.DEPENDENT_TURNED_HU = limit
            row["upside_down_equals_dicom"] = {k: row["upside_down"][k] for k in row["dicom"]} == row["dicom"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"scans": len(rows), "upright_turned": sum(r["upright"]["turned"] for r in rows),
            "upside_down_turned_back": sum(r["upside_down"]["turned"] for r in rows),
            "upside_down_equal_to_dicom": sum(r["upside_down_equals_dicom"] for r in rows), "rows": rows}


def orientation_simulated(seed: int, count: int) -> dict:
    rng = np.random.default_rng(seed)
    counts = {kind: {"studies": 0, "upright_turned": 0, "upside_down_turned_back": 0, "upright_lung_sign_alone": 0,
                     "upright_bone_sign_alone": 0} for kind in ("slab", "whole")}
    wrong = []
    for i in range(count):
        spec, label = SIMULATED_BACKGROUNDS[i % len(SIMULATED_BACKGROUNDS)], ("NP", "CAP", "COVID")[i % 3]
        kind = "whole" if i % 6 == 5 else "slab"
        extent = float(np.exp(rng.uniform(np.log(0.02), np.log(0.6)))) if label != "NP" else None
        sample, _ = simulate(rng, background(spec), label, extent=extent,
                             block_mm=None if kind == "whole" else float(rng.uniform(40, 200)))
        hu = sample.hu.astype(np.float32)
        upright = study_axes(Volume(array=hu.copy(), kind="nifti", is_hu=True, spacing_mm=sample.spacing_mm))
        turned = study_axes(Volume(array=np.ascontiguousarray(hu[:, ::-1]), kind="nifti", is_hu=True,
                                   spacing_mm=sample.spacing_mm))
        gradient = dependent_gradient_hu(hu)
        share = posterior_bone_share(hu)
        counts[kind]["upright_lung_sign_alone"] += gradient is not None and gradient <= -DEPENDENT_TURNED_HU
        counts[kind]["upright_bone_sign_alone"] += share is not None and share < BONE_BELOW_UPRIGHT
        counts[kind]["studies"] += 1
        counts[kind]["upright_turned"] += upright == (1,)
        counts[kind]["upside_down_turned_back"] += turned == (1,)
        if upright == (1,):
            wrong.append(f"{spec} {label} #{i}")
    return {"seed": seed, **counts, "upright_turned_studies": wrong}


def _stack_scores(lungs: np.ndarray, opacity: np.ndarray, joints: dict[int, np.ndarray], lesion: np.ndarray,
                  truth: np.ndarray) -> dict:
    n = len(lesion)
    dice = [2 * (lungs[i] & truth[i]).sum() / max(1, lungs[i].sum() + truth[i].sum()) for i in range(n)]
    inside = [(lungs[i] & lesion[i]).sum() / lesion[i].sum() for i in range(n)]
    error = [abs(100 * (opacity[i] > 0).sum() / max(1, lungs[i].sum()) - 100 * lesion[i].sum() / truth[i].sum())
             for i in range(n)]
    hits = [bool(lesion[i][np.unravel_index(int(np.argmax(np.where(lungs[i], np.abs(m), -np.inf))), m.shape)])
            for i, m in joints.items()]
    return {"lung_dice": round(float(np.mean(dice)), 4), "lesion_inside": round(float(np.mean(inside)), 4),
            "opacity_error_points": round(float(np.mean(error)), 3),
            "pointing_joint": round(float(np.mean(hits)), 4) if hits else None, "pointing_slices": len(hits)}


def stack(bundle: Bundle, seed: int, size: int, before: bool) -> dict:
    rng = np.random.default_rng(seed)
    slices, lesions, lungs = [], [], []
    while len(slices) < size:
        spec, label = STACK_BACKGROUNDS[len(slices) % len(STACK_BACKGROUNDS)], ("COVID", "CAP")[len(slices) % 2]
        sample, _ = simulate(rng, background(spec), label, extent=float(np.exp(rng.uniform(np.log(0.05), np.log(0.5)))))
        lesion_area, lung_area = sample.lesion.sum(axis=(1, 2)), sample.lung.sum(axis=(1, 2))
        candidates = np.flatnonzero((lesion_area > 0.05 * np.maximum(lung_area, 1)) & (lung_area > 0.5 * lung_area.max()))
        if not len(candidates) or sample.hu.shape[1:] != (256, 256):
            continue
        k = int(rng.choice(candidates))
        slices.append(sample.hu[k].astype(np.float32))
        lesions.append(sample.lesion[k])
        lungs.append(sample.lung[k])
    hu, lesion, truth = np.stack(slices), np.stack(lesions), np.stack(lungs)
    spacing = (5.0, 1.4, 1.4)
    together = analyze(Volume(array=hu.copy(), kind="nifti", is_hu=True, spacing_mm=spacing), bundle, saliency="all")
    alone = [analyze(Volume(array=hu[i:i + 1].copy(), kind="nifti", is_hu=True, spacing_mm=spacing), bundle,
                     saliency="all") for i in range(len(hu))]
    out = {"slices": len(hu)}
    if before:  # as a scan, every slice beside another patient's (the behaviour before inference.slice_stack)
        limit, slice_stack.UNRELATED_BELOW = slice_stack.UNRELATED_BELOW, -1.0
        scan = analyze(Volume(array=hu.copy(), kind="nifti", is_hu=True, spacing_mm=spacing), bundle, saliency="all")
        slice_stack.UNRELATED_BELOW = limit
        out["as_one_scan"] = _stack_scores(scan.lung_mask, scan.opacity_mask,
                                           {k: m.joint for k, m in scan.maps.items()}, lesion, truth)
    return {**out,
            "as_one_volume": _stack_scores(together.lung_mask, together.opacity_mask,
                                           {k: m.joint for k, m in together.maps.items()}, lesion, truth),
            "each_alone": _stack_scores(np.stack([r.lung_mask[0] for r in alone]),
                                        np.stack([r.opacity_mask[0] for r in alone]),
                                        {i: r.maps[0].joint for i, r in enumerate(alone) if 0 in r.maps}, lesion, truth)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--model", default="default")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--simulated", type=int, default=120)
    p.add_argument("--stack-slices", type=int, default=24)
    p.add_argument("--before", action="store_true",
                   help="also as before the checks: the upside-down real files as stored, the stack as one scan")
    p.add_argument("--out", type=Path, default=Path("bench/out/inputs.json"))
    a = p.parse_args()
    bundle = load_bundle(a.model, device="cpu")
    report: dict = {"model": {"name": bundle.name, "version": bundle.version}}
    for part in a.parts:
        start = time.time()
        if part == "orientation-real":
            report[part] = orientation_real(bundle, a.before)
        elif part == "orientation-simulated":
            report[part] = orientation_simulated(a.seed, a.simulated)
        else:
            report[part] = stack(bundle, a.seed, a.stack_slices, a.before)
        report[part]["seconds"] = round(time.time() - start, 1)
        print(json.dumps({part: {k: v for k, v in report[part].items() if k != "rows"}}, indent=1), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"figures written to {a.out}")


if __name__ == "__main__":
    main()
