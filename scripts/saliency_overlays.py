"""The joint saliency over real CT slices, to look at: the raw |joint IG| (the product of the three scales' raw maps)
beside the map the pipeline keeps (the product of each scale's |IG| after the paper's 5x5 Gaussian, smoothed once
more), each with a cross on its largest value, on the slice the model ranks most diseased.

    .venv/bin/python scripts/saliency_overlays.py OUT.png SERIES_DIR [SERIES_DIR ...] [--model default] [--tile 320]

Each series (a folder of DICOM files) goes through ``inference.pipeline.analyze`` (saliency on the slices called
diseased); its top slice's maps are drawn in the lung window with the lung outline in cyan, one row per series
(left raw, right kept). The README's ``docs/screenshots/saliency-smoothed.png`` is made so.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from skimage.segmentation import find_boundaries

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from inference.bundle import Bundle, load_bundle  # noqa: E402
from inference.io import load_study  # noqa: E402
from inference.normalize import fixed_window  # noqa: E402
from inference.pipeline import analyze, model_input, positive_classes, saliency_engine  # noqa: E402
from inference.saliency import joint_saliency  # noqa: E402

CYAN, CROSS = (0, 220, 230), (255, 255, 255)


def _overlay(grey: np.ndarray, lungs: np.ndarray, heat: np.ndarray, size: int, title: str) -> Image.Image:
    """The slice in the lung window, ``heat`` (>= 0) in red-yellow where above a tenth of its peak, a cross on the
    peak, the lung outline."""
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    level = heat / heat.max() if heat.max() > 0 else heat
    shown = level > 0.1
    colour = np.stack([np.full_like(level, 255), 255 * level, np.zeros_like(level)], axis=-1)
    rgb[shown] = 0.35 * rgb[shown] + 0.65 * colour[shown]
    rgb[find_boundaries(lungs, mode="inner")] = CYAN
    image = Image.fromarray(rgb.astype(np.uint8))
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    draw = ImageDraw.Draw(image)
    draw.line([(x - 9, y), (x + 9, y)], fill=CROSS, width=3)
    draw.line([(x, y - 9), (x, y + 9)], fill=CROSS, width=3)
    image = image.resize((size, size), Image.Resampling.LANCZOS)
    ImageDraw.Draw(image).text((6, 4), title, fill=CROSS)
    return image


def row(series: Path, bundle: Bundle, size: int) -> list[Image.Image]:
    """Raw and kept joint maps of the series' most diseased explained slice."""
    volume = load_study(series)
    result = analyze(volume, bundle, saliency="positive")
    if not result.maps:
        raise SystemExit(f"{series}: no slice is called diseased, so none has maps")
    positive = positive_classes(bundle.classes)
    top = max((s for s in result.slices if s.index in result.maps),
              key=lambda s: max(s.probabilities[c] for c in positive))
    k, lungs = top.index, result.lung_mask
    x, geometry = model_input(volume, bundle, k, lungs)
    raw = saliency_engine(bundle).attribute(torch.from_numpy(x)[None, None],
                                            bundle.classes.index(result.maps[k].target))
    inside = geometry.mask_to_output(lungs[k])
    raw_joint = np.abs(geometry.map_to_original(joint_saliency([m * inside for m in raw.ig]))) * lungs[k]
    grey = (fixed_window(volume.array[k], 1500, -600) * 255).astype(np.uint8)
    name = f"{series.name} slice {k} ({result.maps[k].target})"
    return [_overlay(grey, lungs[k], raw_joint, size, f"{name}: raw |joint|"),
            _overlay(grey, lungs[k], result.maps[k].joint, size, f"{name}: kept (smoothed scales' product)")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("series", type=Path, nargs="+")
    parser.add_argument("--model", default="default")
    parser.add_argument("--tile", type=int, default=320)
    args = parser.parse_args()
    bundle = load_bundle(args.model, device="cpu")
    rows = [row(s, bundle, args.tile) for s in args.series]
    sheet = Image.new("RGB", (2 * args.tile, args.tile * len(rows)))
    for r, tiles in enumerate(rows):
        for c, t in enumerate(tiles):
            sheet.paste(t, (c * args.tile, r * args.tile))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
