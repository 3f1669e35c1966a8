"""Render phantom studies in a lung window (W1500/L-600) to PNG montages, to eyeball that they look like chest CT.

Usage: python scripts/render_phantom.py --seed 3 --labels NP CAP COVID --out /tmp/phantom [--size 512 --slices 96]
Each montage shows five axial slices (apex to base) and a coronal reformat; ``--overlay`` outlines the lesion mask
in red and the lung mask in green.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from training.phantom import generate_study  # noqa: E402


def lung_window(hu: np.ndarray, width: float = 1500.0, level: float = -600.0) -> np.ndarray:
    """8-bit grey levels of ``hu`` in the given window."""
    return (np.clip((hu - (level - width / 2)) / width, 0, 1) * 255).astype(np.uint8)


def _rgb(gray: np.ndarray, lung: np.ndarray | None, lesion: np.ndarray | None) -> np.ndarray:
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    for mask, colour in ((lung, (0, 200, 0)), (lesion, (255, 0, 0))):
        if mask is not None:
            rgb[mask & ~ndimage.binary_erosion(mask)] = colour
    return rgb


def render(seed: int, label: str, out: Path, size: int | None, slices: int | None, profile: str | None,
           overlay: bool) -> Path:
    study = generate_study(seed, label, profile=profile, n_slices=slices, size=size)
    n, h, w = study.hu.shape
    lung_z = np.nonzero(study.lung_mask.any(axis=(1, 2)))[0]
    picks = np.linspace(lung_z.max(), lung_z.min(), 5).round().astype(int)  # apex (high z) to base
    tiles = []
    for k in picks:
        tiles.append(_rgb(lung_window(study.hu[k]), study.lung_mask[k] if overlay else None,
                          study.lesion_mask[k] if overlay else None))
    row = h // 2 + h // 20
    coronal = lung_window(study.hu[::-1, row, :])
    zoom = study.spacing_mm[0] / study.spacing_mm[2]
    coronal = np.asarray(Image.fromarray(coronal).resize((w, max(1, int(round(n * zoom))))))
    cor_rgb = np.repeat(coronal[..., None], 3, axis=-1)
    canvas = np.zeros((max(h, cor_rgb.shape[0]) * 2, w * 3, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, 3)
        canvas[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    canvas[h:h + cor_rgb.shape[0], 2 * w:3 * w] = cor_rgb[: canvas.shape[0] - h]
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"phantom_{seed}_{label}_{study.profile}.png"
    Image.fromarray(canvas).save(path)
    print(f"{path}: slices {list(picks)}, infection {study.infection_percent:.2f}%, findings {study.findings}")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--labels", nargs="+", default=["NP", "CAP", "COVID"])
    parser.add_argument("--out", type=Path, default=Path("/tmp/phantom"))
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--slices", type=int, default=None)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--overlay", action="store_true")
    args = parser.parse_args()
    for label in args.labels:
        render(args.seed, label, args.out, args.size, args.slices, args.profile, args.overlay)


if __name__ == "__main__":
    main()
