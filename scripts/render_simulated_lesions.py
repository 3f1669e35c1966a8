"""Side by side: real COVID-19 (RICORD slabs) and the simulator's COVID-19 / CAP / NP on real and phantom anatomy.

    .venv/bin/python scripts/render_simulated_lesions.py [--out docs/screenshots/simulated-lesions.png]

Row 1: the three RICORD COVID-19 positive slabs (real disease, lung window). Rows 2-4: one real background each
(LIDC-IDRI-0001, LIDC-IDRI-0003, Lung_Dx-A0001), columns NP (maybe with confounders), CAP (15 % of the lung),
COVID-19 at 8 % and 35 %; row 5: a phantom patient. The simulated lesion's truth outline is drawn in red.
RICORD is CC BY-NC 4.0 (doi:10.7937/VTW4-X588): research use, cited in the model card.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from training.checks import _load  # noqa: E402
from training.simulate.backgrounds import background, shared_data_dir, simulate  # noqa: E402

TILE = 192


def _window(hu: np.ndarray) -> np.ndarray:
    return (np.clip((hu + 1350.0) / 1500.0, 0, 1) * 255).astype(np.uint8)


def _tile(hu: np.ndarray, lesion: np.ndarray | None = None) -> np.ndarray:
    rgb = np.repeat(_window(hu)[..., None], 3, axis=2)
    if lesion is not None and lesion.any():
        rgb[lesion & ~ndimage.binary_erosion(lesion)] = (255, 40, 40)
    return np.asarray(Image.fromarray(rgb).resize((TILE, TILE), Image.BILINEAR))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/screenshots/simulated-lesions.png"))
    a = p.parse_args()
    rows = []
    real = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in (1, 2, 3):
            v = _load(shared_data_dir() / "real-ct" / f"ricord-slabs/covid-positive/patient_{i}")
            real.append(_tile(v.array[v.n_slices // 2]))
    blank = np.zeros((TILE, TILE, 3), dtype=np.uint8)
    rows.append(np.concatenate(real + [blank], axis=1))
    for spec in ("LIDC-IDRI-0001", "LIDC-IDRI-0003", "Lung_Dx-A0001", "phantom:5"):
        bg = background(spec)
        tiles = []
        for j, (label, extent) in enumerate((("NP", None), ("CAP", 0.15), ("COVID", 0.08), ("COVID", 0.35))):
            rng = np.random.default_rng([2026, j, len(spec)])
            sample, _ = simulate(rng, bg, label, extent=extent)
            z = int(np.argmax(sample.lesion.sum(axis=(1, 2)))) if sample.lesion.any() else sample.hu.shape[0] // 2
            tiles.append(_tile(sample.hu[z], sample.lesion[z]))
        rows.append(np.concatenate(tiles, axis=1))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(a.out)
    print(f"written {a.out}")


if __name__ == "__main__":
    main()
