"""Lung outlines over real CT slices, to look at: the default (``auto``) mask in yellow, the classical one in blue.

    .venv/bin/python scripts/lung_overlays.py OUT.png SERIES_DIR [SERIES_DIR ...] [--slice 0.5] [--tile 256]

Each series (a folder of DICOM files) is loaded, segmented with both methods as the pipeline would, and one slice
(``--slice``: the fraction along the lung's extent, 0.5 = its middle; of a thin slab its middle slice) is drawn in
the lung window with both outlines, tiles side by side. The README's ``docs/screenshots/lungs-*.png`` are made so.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage.segmentation import find_boundaries

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.io import load_study  # noqa: E402
from inference.lungs import segment_lungs  # noqa: E402
from inference.normalize import fixed_window  # noqa: E402

YELLOW, BLUE = (255, 220, 0), (60, 140, 255)


def tile(series: Path, where: float, size: int) -> Image.Image:
    """One slice of ``series`` with the classical (blue) and default (yellow, on top) lung outlines."""
    volume = load_study(series)
    auto, classical = segment_lungs(volume, "auto"), segment_lungs(volume, "classical")
    rows = np.flatnonzero((auto | classical).any(axis=(1, 2)))
    k = int(rows[0] + where * (rows[-1] - rows[0])) if rows.size else volume.array.shape[0] // 2
    grey = (fixed_window(volume.array[k], 1500, -600) * 255).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[find_boundaries(classical[k], mode="thick")] = BLUE
    rgb[find_boundaries(auto[k], mode="thick")] = YELLOW
    return Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("series", type=Path, nargs="+")
    parser.add_argument("--slice", type=float, default=0.5)
    parser.add_argument("--tile", type=int, default=256)
    args = parser.parse_args()
    tiles = [tile(s, args.slice, args.tile) for s in args.series]
    sheet = Image.new("RGB", (args.tile * len(tiles), args.tile))
    for i, t in enumerate(tiles):
        sheet.paste(t, (i * args.tile, 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
