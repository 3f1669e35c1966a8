"""Scanner randomisation: the same anatomy as different scanners, protocols and doses would show it.

Why: a model that sees one scanner's noise, kernel, slice thickness and field of view learns them as features (the
phantom-trained model did). Each study drawn from any source (real background or phantom) goes through
:func:`randomize` after its lesions are painted:

* **field of view / pixel spacing**: an in-plane zoom (0.8-1.25) with the matrix kept, i.e. a smaller or larger
  reconstruction field;
* **slice thickness**: thin slices averaged into slabs (1-8 mm; only thicker, never thinner, than the source);
* **reconstruction kernel and dose**: Gaussian noise whose texture is shaped by a smooth (soft-tissue kernel) or
  sharpening (lung kernel) filter, at a level from ultra-low to standard dose;
* **calibration**: a HU offset (+-30) and gain (0.97-1.03);
* **padding**: the region outside the scan circle stored as -1024, -2048 or -3024, as different vendors do.

The lung and lesion masks are transformed with the image (nearest neighbour / slab "any"), so the truth stays aligned.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["ScanSample", "randomize", "PADDING_VALUES"]

PADDING_VALUES = (-1024.0, -2048.0, -3024.0)


@dataclass
class ScanSample:
    """An HU volume with its masks and voxel spacing (z, y, x) in mm."""

    hu: np.ndarray
    lung: np.ndarray
    lesion: np.ndarray
    spacing_mm: tuple[float, float, float]


def _zoom_plane(array: np.ndarray, factor: float, order: int, fill: float) -> np.ndarray:
    """Zoom every slice about its centre by ``factor`` keeping the matrix size (crop or pad with ``fill``)."""
    if abs(factor - 1.0) < 1e-3:
        return array
    rows, cols = array.shape[1:]
    matrix = np.diag([1.0, 1.0 / factor, 1.0 / factor])
    centre = np.array([0.0, (rows - 1) / 2.0, (cols - 1) / 2.0])
    offset = centre - matrix @ centre
    return ndimage.affine_transform(array, matrix, offset=offset, order=order, cval=fill,
                                    output=np.float32 if order else array.dtype)


def _slab(array: np.ndarray, k: int, reduce: str) -> np.ndarray:
    """Average (``mean``) or OR (``any``) groups of ``k`` consecutive slices."""
    n = (array.shape[0] // k) * k
    if k <= 1 or n == 0:
        return array
    grouped = array[:n].reshape(n // k, k, *array.shape[1:])
    return grouped.mean(axis=1, dtype=np.float32) if reduce == "mean" else grouped.mean(axis=1) >= 0.5


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma_hu: float, sharp: bool) -> np.ndarray:
    """Correlated in-plane noise: smooth kernels blur white noise, sharp kernels add its high-pass part."""
    white = rng.standard_normal(shape).astype(np.float32)
    blur = ndimage.gaussian_filter(white, (0, rng.uniform(0.6, 1.2), rng.uniform(0.6, 1.2)))
    textured = white - 0.7 * blur if sharp else blur
    return textured * np.float32(sigma_hu / (textured.std() + 1e-6))


def randomize(rng: np.random.Generator, sample: ScanSample, max_thickness_mm: float = 8.0) -> ScanSample:
    """One random scanner's view of ``sample`` (see the module docstring); the input is not modified."""
    hu, lung, lesion = sample.hu.astype(np.float32), sample.lung.astype(bool), sample.lesion.astype(bool)
    dz, dy, dx = sample.spacing_mm
    zoom = float(rng.uniform(0.8, 1.25))
    body_fill = -1024.0
    hu = _zoom_plane(hu, zoom, 1, body_fill)
    lung = _zoom_plane(lung, zoom, 0, 0) > 0
    lesion = _zoom_plane(lesion, zoom, 0, 0) > 0
    dy, dx = dy / zoom, dx / zoom
    target = float(rng.uniform(dz, max(dz, max_thickness_mm)))
    k = max(1, int(round(target / dz)))
    if k > 1 and hu.shape[0] // k >= 3:
        hu, lung, lesion = _slab(hu, k, "mean"), _slab(lung, k, "any"), _slab(lesion, k, "any")
        dz *= k
    sigma = float(rng.choice([rng.uniform(5, 15), rng.uniform(15, 35), rng.uniform(35, 60)], p=[0.4, 0.4, 0.2]))
    hu = hu + _noise(rng, hu.shape, sigma, sharp=bool(rng.random() < 0.5))
    hu = hu * np.float32(rng.uniform(0.97, 1.03)) + np.float32(rng.uniform(-30, 30))
    rows, cols = hu.shape[1:]
    yy, xx = np.ogrid[:rows, :cols]
    outside = ((yy - (rows - 1) / 2.0) ** 2 + (xx - (cols - 1) / 2.0) ** 2) > (min(rows, cols) / 2.0) ** 2
    if rng.random() < 0.6:
        hu[:, outside] = float(rng.choice(PADDING_VALUES))
    np.clip(hu, -3024.0, 3071.0, out=hu)
    return ScanSample(hu, lung & ~outside, lesion & ~outside, (dz, dy, dx))
