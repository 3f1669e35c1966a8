"""Benchmark: lung masks that keep the disease, on held-out real backgrounds (and a phantom) with simulated lesions.

    .venv/bin/python bench/lungs.py [--seeds 2] [--first-seed 0] [--threads 1] [--open-mm 0 3 5] [--levels 0.5 0.7 0.85]
                                    [--timing-scan LIDC-IDRI-0003]

Every held-out background (``training.unet.HELD_OUT_BACKGROUNDS``, never trained on, and the phantom patient 900,
not among the training phantoms) gets ``--seeds`` fresh CAP and COVID insertions of random extent
(``training.simulate.simulate``, a 300 mm block: the whole lung, through a random scanner). For each method
(``classical``, ``unet``, ``auto`` = the fusion) it prints the Dice against the truth (the clean lung mask, which
holds the lesions) and the fraction of lesion voxels inside the mask, each study and the means; ``--open-mm``
and ``--levels`` re-fuse the same masks with other openings and U-Net probability levels (the fusion's
parameters). ``--timing-scan`` times the methods on a full-resolution real series (512 x 512) as a study would
arrive. Writes bench/out/lungs.json. Not a test; the machine may be shared, so note the load (printed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.io import Volume, load_study  # noqa: E402
from inference.lungs import AUTO_HOLE_LEVEL, segment_lungs, unet_on_lung_slab  # noqa: E402
from inference.lungs.fusion import AERATED_FLOOR_HU, fuse_masks  # noqa: E402
from training.simulate.backgrounds import (REAL_BACKGROUNDS, TRUTH_VERSION, background, shared_data_dir,  # noqa: E402
                                           simulate)
from training.unet import HELD_OUT_BACKGROUNDS, dice  # noqa: E402

HELD_OUT_PHANTOM = "phantom:900"


def _timed(volume: Volume, method: str) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    mask = segment_lungs(volume, method)
    return mask, time.perf_counter() - start


def measure_study(spec: str, label: str, seed: int, erosions: list[float], levels: list[float]) -> dict:
    """One simulated study: every method's Dice, lesion fraction inside and seconds."""
    bg = background(spec)
    sample, findings = simulate(np.random.default_rng([seed, 4242, sum(map(ord, spec)), len(label)]), bg, label,
                                block_mm=300.0)
    volume = Volume(array=sample.hu.astype(np.float32), kind="dicom-series", is_hu=True,
                    spacing_mm=sample.spacing_mm)
    lesion = sample.lesion
    row: dict = {"background": bg.name, "label": label, "seed": seed, "findings": findings,
                 "shape": list(sample.hu.shape), "lesion_voxels": int(lesion.sum())}
    masks = {}
    for method in ("classical", "unet", "auto"):
        masks[method], seconds = _timed(volume, method)
        row[method] = {"dice": dice(masks[method], sample.lung),
                       "lesion_inside": float((masks[method] & lesion).sum()) / max(1, int(lesion.sum())),
                       "seconds": seconds}
    prob = unet_on_lung_slab(sample.hu, masks["classical"])
    for mm in erosions:
        for level in levels:
            fused = fuse_masks(sample.hu, masks["classical"], prob > level, sample.spacing_mm[1], open_mm=mm,
                               support=prob > AUTO_HOLE_LEVEL, aerated_floor_hu=AERATED_FLOOR_HU)
            row[f"fusion_open_{mm:g}mm_p{level:g}"] = {
                "dice": dice(fused, sample.lung),
                "lesion_inside": float((fused & lesion).sum()) / max(1, int(lesion.sum()))}
    return row


def timing_scan(name: str) -> dict:
    """Seconds per method on a full-resolution real series (the way the pipeline meets a study)."""
    folder = shared_data_dir() / "real-ct" / REAL_BACKGROUNDS[name][1]
    series = sorted({p.parent for p in folder.rglob("*.dcm")}, key=lambda p: -len(list(p.glob("*.dcm"))))
    volume = load_study(series[0])
    out: dict = {"scan": name, "shape": list(volume.array.shape)}
    segment_lungs(volume.array[:20], "unet")  # load the weights once, outside the timing
    for method in ("classical", "unet", "auto"):
        out[method] = _timed(volume, method)[1]
    return out


def _summary(rows: list[dict], key: str) -> dict:
    return {"dice_mean": float(np.mean([r[key]["dice"] for r in rows])),
            "dice_min": float(np.min([r[key]["dice"] for r in rows])),
            "lesion_inside_mean": float(np.mean([r[key]["lesion_inside"] for r in rows])),
            "lesion_inside_min": float(np.min([r[key]["lesion_inside"] for r in rows]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="draw the studies from seeds first..first+seeds-1 (fresh draws to confirm a choice made "
                             "on the default ones)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--open-mm", type=float, nargs="*", default=[0.0, 3.0, 5.0])
    parser.add_argument("--levels", type=float, nargs="*", default=[0.5, 0.7, 0.85],
                        help="U-Net probabilities above which the fusion adds dense lung")
    parser.add_argument("--timing-scan", default="LIDC-IDRI-0003", help="a REAL_BACKGROUNDS name, or '' for none")
    parser.add_argument("--backgrounds", nargs="*", default=[*HELD_OUT_BACKGROUNDS, HELD_OUT_PHANTOM])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    specs = [s for s in args.backgrounds
             if s.startswith("phantom:") or (shared_data_dir() / "real-ct" / REAL_BACKGROUNDS[s][1]).is_dir()]
    rows = []
    for spec in specs:
        for label in ("CAP", "COVID"):
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                row = measure_study(spec, label, seed, args.open_mm, args.levels)
                rows.append(row)
                print(f"{row['background']:15s} {label:5s} seed {seed} lesion {row['lesion_voxels']:7d}  " + "  ".join(
                    f"{m} dice {row[m]['dice']:.3f} in {row[m]['lesion_inside']:.3f} {row[m]['seconds']:.1f}s"
                    for m in ("classical", "unet", "auto")), flush=True)
    keys = ["classical", "unet", "auto"] + [f"fusion_open_{mm:g}mm_p{lv:g}" for mm in args.open_mm
                                            for lv in args.levels]
    summary = {k: _summary(rows, k) for k in keys}
    real = [r for r in rows if not r["background"].startswith("phantom")]
    summary_real = {k: _summary(real, k) for k in keys} if real else {}
    for name, table in (("all held-out", summary), ("real held-out only", summary_real)):
        print(f"-- {name} ({len(rows) if table is summary else len(real)} studies)")
        for k, v in table.items():
            print(f"{k:22s} dice mean {v['dice_mean']:.4f} min {v['dice_min']:.4f}   lesion inside mean "
                  f"{v['lesion_inside_mean']:.4f} min {v['lesion_inside_min']:.4f}")
    timing = timing_scan(args.timing_scan) if args.timing_scan and args.timing_scan in specs else None
    if timing:
        print(f"-- seconds per study, {timing['scan']} {timing['shape']}: "
              + "  ".join(f"{m} {timing[m]:.2f}" for m in ("classical", "unet", "auto")))
    print(f"load average at start {load:.2f}, end {os.getloadavg()[0]:.2f}, threads {args.threads}, backgrounds' truth "
          f"version {TRUTH_VERSION} (draws from another version are other studies)")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "lungs.json").write_text(json.dumps({"studies": rows, "summary": summary, "summary_real": summary_real,
                                                "timing": timing, "load_average": load, "threads": args.threads,
                                                "truth_version": TRUTH_VERSION},
                                               indent=2) + "\n")


if __name__ == "__main__":
    main()
