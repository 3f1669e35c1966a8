"""Benchmark: how many quadrature nodes Integrated Gradients needs, on real slices through a shipped model.

    .venv/bin/python bench/ig_steps.py [--model paper] [--steps 8 12 16 20 25] [--reference 64] [--threads 2]

IG's completeness axiom says each scale's attributions sum to F_s(x) - F_s(0); with ``m`` Gauss-Legendre nodes the
sum is a quadrature of a piecewise-smooth path integral (ReLU and max-pooling kinks), so the error says how far
``m`` is from converged. For each ``--steps`` value the fast path (``inference.saliency.SaliencyEngine``, fp32
gradients) explains the same real slices as the pipeline prepares them (``inference.pipeline.model_input``: RICORD
COVID-19 positive slabs and LIDC-IDRI-0001, three slices each, for the class the model predicts), and prints: seconds
per slice, the relative completeness error per scale (median, 90th percentile, max), the correlation of each
scale's map and of the joint map with the ``--reference`` node count, and how often the joint map's maximum is the
reference's pixel. Why: fewer nodes would make the paper-width model's saliency proportionally faster (#14), but
only at equal completeness error. Reads ``../shared/data`` (``LUNGSCOPE_SHARED_DATA``); writes bench/out/ig_steps.json.
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

from inference.bundle import load_bundle  # noqa: E402
from inference.io import load_study  # noqa: E402
from inference.lungs import segment_lungs  # noqa: E402
from inference.pipeline import model_input  # noqa: E402
from inference.saliency import SaliencyEngine  # noqa: E402
from training.simulate.backgrounds import series_folder, shared_data_dir  # noqa: E402

CASES = ("ricord-slabs/covid-positive/patient_1", "ricord-slabs/covid-positive/patient_3", "lidc-idri/LIDC-IDRI-0001")


def real_inputs(bundle, per_case: int = 3) -> tuple[list[torch.Tensor], list[int]]:
    """Slices of the real cases as the pipeline feeds them to the model, and the class it predicts for each."""
    xs, targets = [], []
    for rel in CASES:
        folder = shared_data_dir() / "real-ct" / rel
        if not folder.is_dir():
            continue
        volume = load_study(series_folder(folder))
        lung = segment_lungs(volume)
        areas = lung.sum(axis=(1, 2))
        # spread over the lungs: every tenth of the 40 largest lung slices (all of a 10-slice slab: 3 of them)
        picks = np.argsort(areas)[::-1][:40][::10][:per_case] if volume.n_slices > 20 else [2, 5, 8][:per_case]
        for k in picks:
            x = torch.from_numpy(np.asarray(model_input(volume, bundle, int(k), lung)[0], np.float32))[None]
            with torch.no_grad():
                targets.append(int(bundle.model(x[None]).argmax()))
            xs.append(x)
    return xs, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="paper")
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 12, 16, 20, 25])
    parser.add_argument("--reference", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    bundle = load_bundle(args.model, device="cpu")
    model = bundle.model.eval()
    xs, targets = real_inputs(bundle)
    if not xs:
        sys.exit(f"no real scans under {shared_data_dir()}: nothing to measure")
    scales = [model.scale_forward(s) for s in range(3)]
    with torch.no_grad():
        at_zero = [f(torch.zeros_like(xs[0][None]))[0] for f in scales]  # the baseline is the same for every slice
        deltas = [[float(f(x[None])[0, t] - z[t]) for f, z in zip(scales, at_zero)] for x, t in zip(xs, targets)]

    def explained(m: int) -> tuple[list, float]:
        """Every slice's maps with ``m`` nodes, and the seconds per slice."""
        engine = SaliencyEngine(model, steps=m, grad_dtype=torch.float32)
        start = time.perf_counter()
        maps = [engine.attribute(x, t) for x, t in zip(xs, targets)]
        return maps, (time.perf_counter() - start) / len(xs)

    reference, reference_seconds = explained(args.reference)
    rows = []
    print(f"{args.model}: {len(xs)} real slices, predicted classes {targets}; reference m = {args.reference}")
    for m in [*args.steps, args.reference]:
        maps, seconds = (reference, reference_seconds) if m == args.reference else explained(m)
        error = np.array([[abs(o.scores[s] - d[s]) / max(abs(d[s]), 1e-9) for s in range(3)]
                          for o, d in zip(maps, deltas)])
        corr = np.array([[np.corrcoef(o.ig[s].ravel(), r.ig[s].ravel())[0, 1] for s in range(3)]
                         + [np.corrcoef(o.joint.ravel(), r.joint.ravel())[0, 1]] for o, r in zip(maps, reference)])
        same_max = float(np.mean([np.argmax(np.abs(o.joint)) == np.argmax(np.abs(r.joint))
                                  for o, r in zip(maps, reference)]))
        row = {"steps": m, "seconds_per_slice": seconds, "completeness_error_median": float(np.median(error)),
               "completeness_error_p90": float(np.quantile(error, 0.9)), "completeness_error_max": float(error.max()),
               "scale_corr_min": float(corr[:, :3].min()), "joint_corr_median": float(np.median(corr[:, 3])),
               "joint_corr_min": float(corr[:, 3].min()), "joint_max_same": same_max}
        rows.append(row)
        print(f"m={m:3d} {seconds:5.2f} s/slice  completeness error median {row['completeness_error_median']:.3f} "
              f"p90 {row['completeness_error_p90']:.3f} max {row['completeness_error_max']:.3f}  |  vs m={args.reference}: "
              f"scale corr min {row['scale_corr_min']:.3f}, joint corr median {row['joint_corr_median']:.3f} "
              f"min {row['joint_corr_min']:.3f}, joint maximum same pixel {same_max:.2f}", flush=True)
    print(f"load average at start {load:.2f}, end {os.getloadavg()[0]:.2f}, threads {args.threads}")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "ig_steps.json").write_text(json.dumps({"model": args.model, "slices": len(xs), "targets": targets,
                                                   "reference": args.reference, "rows": rows, "load_average": load},
                                                  indent=2) + "\n")


if __name__ == "__main__":
    main()
