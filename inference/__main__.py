"""Command line: ``python -m inference analyze PATH... [options]``.

One PATH prints one JSON object (schema ``lungscope.analysis/2``); several print JSON Lines in the same order, where
a study that cannot be read becomes ``{"input": {"path": ...}, "error": "..."}`` and the others go on. Any failure
makes the exit status non-zero and prints a one-line reason on stderr. A progress bar goes to stderr (terminals only).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from .bundle import BundleError, load_bundle
from .io import LoadError, load_study
from .lungs import DEFAULT_METHOD, METHODS
from .pipeline import SALIENCY_MODES, AnalysisResult, analyze

EXIT_STUDY_FAILED, EXIT_BAD_MODEL = 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m inference", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("analyze", help="classify chest CT studies, explain them, find lesion boxes")
    a.add_argument("paths", nargs="+", metavar="PATH",
                   help="a DICOM folder or zip, a NIfTI file, or a PNG/JPEG slice; one study per PATH")
    a.add_argument("--out", type=Path, help="write the JSON here instead of stdout")
    a.add_argument("--model", default="default", help="bundle folder or name under models/ (default: default)")
    a.add_argument("--saliency", choices=SALIENCY_MODES, default="positive",
                   help="which slices get Integrated Gradients maps, boxes and severity (default: positive)")
    a.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    a.add_argument("--save-maps", type=Path, metavar="DIR",
                   help="also save each explained slice's maps as DIR/<study>/<index>.npz")
    a.add_argument("--lungs", choices=METHODS, default=DEFAULT_METHOD,
                   help="lung segmentation method (auto: the U-Net, checked against the classical one)")
    return parser


def save_maps(result: AnalysisResult, out_dir: Path) -> None:
    """One npz per explained slice: joint, conv3..5 (IG), cam3..5 and the lung mask, at original resolution."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for index, maps in result.maps.items():
        arrays = {"joint": maps.joint, **{f"conv{i + 3}": m for i, m in enumerate(maps.ig)},
                  **{f"cam{i + 3}": m for i, m in enumerate(maps.cams)}}
        np.savez_compressed(out_dir / f"{index}.npz", lung=result.lung_mask[index].astype(np.uint8),
                            **{k: v.astype(np.float16) for k, v in arrays.items()})


def _study_dir_name(path: str, position: int) -> str:
    stem = Path(path).name.split(".")[0] or "study"
    return f"{position:03d}-{stem}"


def analyze_one(path: str, bundle: Any, args: argparse.Namespace, position: int) -> dict[str, Any]:
    """Load and analyse one PATH; raises LoadError for input that cannot be read."""
    start = time.perf_counter()
    volume = load_study(path)
    loaded = time.perf_counter() - start
    with tqdm(total=100, desc=Path(path).name[:30], unit="%", file=sys.stderr, disable=None, leave=False) as bar:
        def progress(fraction: float, message: str = "") -> None:
            bar.set_postfix_str(message[:40], refresh=False)
            bar.update(max(0, round(100 * fraction) - bar.n))

        result = analyze(volume, bundle, saliency=args.saliency, lung_method=args.lungs, progress=progress)
    result.timings_s["load"] = loaded
    result.timings_s["total"] += loaded
    if args.save_maps is not None:
        save_maps(result, args.save_maps / _study_dir_name(path, position))
    return result.to_json()


def run_analyze(args: argparse.Namespace, out: TextIO) -> int:
    try:
        bundle = load_bundle(args.model, device=args.device)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_MODEL
    status = 0
    several = len(args.paths) > 1
    for position, path in enumerate(args.paths):
        try:
            doc = analyze_one(path, bundle, args, position)
        except LoadError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = EXIT_STUDY_FAILED
            if not several:
                return status
            doc = {"input": {"path": path}, "error": str(exc)}
        out.write(json.dumps(doc) + "\n" if several else json.dumps(doc, indent=2) + "\n")
        out.flush()
    return status


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.out is None:
        return run_analyze(args, sys.stdout)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w") as out:
        return run_analyze(args, out)


if __name__ == "__main__":
    sys.exit(main())
