"""Benchmark: end-to-end analysis of a 128-slice 512x512 phantom chest CT on CPU, per stage, per saliency mode.

    .venv/bin/python bench/analyze.py [--threads 2] [--slices 128] [--size 512] [--quick N] [--model BUNDLE]
                                      [--device cpu|cuda] [--series DIR] [--cpu]

The study is written as DICOM and read back (so ``load`` is real), or ``--series DIR`` reads a real one (e.g. the
JPEG 2000 LIDC-IDRI scans in ``../shared/data/real-ct/lidc-idri``); ``load`` is then also timed with one decode
thread, for the parallel decode's gain. The model is ``--model`` or a random full-width
bundle. ``none`` runs the whole pipeline; ``positive`` and ``all`` run in full unless ``--quick N`` is given, in which
case the saliency of N slices is timed and multiplied out to the slices that mode would explain (printed as an
estimate); the peak RSS of the process is printed last. ``--cpu`` (with ``--series``) prints only the CPU seconds
of each stage in one process with one thread. Not a test; the machine may be shared, so note its load (printed).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.bundle import load_bundle, save_bundle  # noqa: E402
from inference.classifier import MultiScaleVGG  # noqa: E402
from inference.io import decode_workers, load_study  # noqa: E402
from inference.pipeline import analyze, positive_classes  # noqa: E402
from inference.preprocess import prepare_slice  # noqa: E402
from inference.saliency import SaliencyEngine  # noqa: E402


def _bundle(path: str | None, tmp: Path, device: str):
    if path:
        return load_bundle(path, device=device)
    torch.manual_seed(0)
    return load_bundle(save_bundle(MultiScaleVGG(3), tmp / "bundle", {"name": "random", "version": "0",
                                                                      "classes": ["NP", "CAP", "COVID"]}), device)


def _fmt(timings: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:6.2f}" for k, v in timings.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--quick", type=int, default=0, metavar="N", help="time saliency on N slices and extrapolate")
    parser.add_argument("--model", help="bundle folder or name (default: a random full-width model)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where the model runs")
    parser.add_argument("--series", type=Path, help="a real DICOM series folder instead of the phantom")
    parser.add_argument("--cpu", action="store_true",
                        help="only CPU seconds per stage, one process and one thread (robust to a shared machine)")
    args = parser.parse_args()
    if args.cpu:
        _cpu_stages(args)
        return
    torch.set_num_threads(args.threads)
    from training.phantom import generate_study, write_dicom_series

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bundle = _bundle(args.model, tmp, args.device)
        series = args.series
        if series is None:
            study = generate_study(11, "COVID", profile="thin-sharp", size=args.size, n_slices=args.slices)
            series = write_dicom_series(study, tmp / "dicom")[0].parent
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; torch {torch.__version__}, "
              f"{args.threads} threads; model {bundle.name} width {bundle.model.width} on {bundle.device}")
        if args.series:
            os.environ["LUNGSCOPE_DECODE_PROCESSES"] = "1"
            start = time.perf_counter()
            load_study(series)
            one_thread_s = time.perf_counter() - start
            del os.environ["LUNGSCOPE_DECODE_PROCESSES"]
        start = time.perf_counter()
        volume = load_study(series)
        load_s = time.perf_counter() - start
        if args.series:
            print(f"load {load_s:.2f} s on {decode_workers()} decode workers, {one_thread_s:.2f} s on one "
                  f"({one_thread_s / load_s:.2f}x); load average now {os.getloadavg()[0]:.1f}")
        base = analyze(volume, bundle, saliency="none")
        timings = {**base.timings_s, "load": load_s, "total": base.timings_s["total"] + load_s}
        print(f"{volume.n_slices} slices {volume.array.shape[1]}x{volume.array.shape[2]}, "
              f"{len(base.slices)} lung slices classified")
        print(f"saliency none     : {_fmt(timings)}  (classification-only end to end: {timings['total']:.2f} s)")
        positive = positive_classes(bundle.classes)
        n_positive = sum(max(s.probabilities, key=s.probabilities.get) in positive for s in base.slices)
        for mode, n_explained in (("positive", n_positive), ("all", len(base.slices))):
            if not args.quick:
                result = analyze(volume, bundle, saliency=mode, lungs=base.lung_mask)
                full = {**result.timings_s, "load": load_s, "lungs": timings["lungs"],
                        "total": result.timings_s["total"] + load_s + timings["lungs"]}
                print(f"saliency {mode:9s}: {_fmt(full)}  ({len(result.maps)} slices explained)")
                continue
            per_slice = _time_saliency(volume, bundle, base, args.quick)
            estimate = timings["total"] + per_slice * n_explained
            print(f"saliency {mode:9s}: ~{per_slice:.2f} s/slice x {n_explained} slices -> total ~{estimate:.1f} s "
                  f"(estimate from {args.quick} slices)")
        print(f"peak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB "
              f"(volume {volume.array.dtype} {volume.array.nbytes / 2**20:.0f} MiB); load average now "
              f"{os.getloadavg()[0]:.1f}")


def _cpu_stages(args: argparse.Namespace) -> None:
    """CPU seconds of decode, lungs and classify + opacity/boxes (``saliency none``) in this one process with one
    torch thread: other jobs on the machine stretch the wall time, much less the CPU time a stage needs."""
    from inference.lungs import segment_lungs

    if args.series is None:
        raise SystemExit("--cpu needs --series")
    os.environ["LUNGSCOPE_DECODE_PROCESSES"] = "1"
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp_name:
        bundle = _bundle(args.model, Path(tmp_name), "cpu")
    segment_lungs(np.full((20, 64, 64), -1000.0, dtype=np.float32))  # the U-Net's weights, loaded outside the timing
    stages: dict[str, float] = {}
    start = time.process_time()
    volume = load_study(args.series)
    stages["decode"] = time.process_time() - start
    start = time.process_time()
    lungs = segment_lungs(volume)
    stages["lungs"] = time.process_time() - start
    start = time.process_time()
    analyze(volume, bundle, saliency="none", lungs=lungs)
    stages["classify+opacity"] = time.process_time() - start
    stages["total"] = sum(stages.values())
    print(f"CPU seconds, one process, one thread ({volume.n_slices} slices, {volume.array.dtype}): {_fmt(stages)}; "
          f"load average {os.getloadavg()[0]:.1f}")


def _time_saliency(volume, bundle, base, n: int) -> float:
    """Mean seconds of the fast IG (plus mapping back) over n lung slices, as the pipeline runs it."""
    from inference.normalize import apply_window, study_window
    from inference.preprocess import crop_geometry

    window = study_window(volume.array, bundle.meta["normalization"], volume.is_hu, base.lung_mask)
    engine = SaliencyEngine(bundle.model.eval(), steps=int(bundle.meta["saliency"]["steps"]))
    picks = [s.index for s in base.slices][:: max(1, len(base.slices) // n)][:n]
    start = time.perf_counter()
    for k in picks:
        geometry = crop_geometry(base.lung_mask[k], float(bundle.meta["crop"]["margin"]), base.lung_mask.shape[1:])
        x = torch.from_numpy(prepare_slice(apply_window(volume.array[k], window), geometry))[None].to(bundle.device)
        maps = engine.attribute(x, 2)
        [geometry.map_to_original(m) for m in (*maps.ig, maps.joint)]
    return (time.perf_counter() - start) / len(picks)


if __name__ == "__main__":
    main()
