"""Anatomy randomisation: a background's chest as a differently built patient would hold it.

Why: five real backgrounds are five anatomies. Left out of training, a healthy background came out diseased on up
to 12 of 14 studies (leave one background out, ``models/default/MODEL_CARD.md``): a model that has seen each
healthy chest only as it is can learn "unlike the chests I know" as evidence of disease. Each study drawn from a
background is therefore first reshaped, before its lesions are painted (so lesions keep their own shapes and the
truth masks stay exact):

* **body habitus**: an in-plane stretch along the rows and the columns independently (``STRETCH``), about the
  lungs' centre: broader or deeper chests (the scanner's isotropic zoom, :mod:`training.simulate.scanner`, is the
  field of view, not the body);
* **organ shape and position**: a smooth random displacement field (control points ``CONTROL_MM`` apart, cubic
  interpolation, ``DISPLACEMENT_MM`` standard deviation per axis in-plane, clipped at 3 standard deviations), the
  same kind of deformation registration methods fit between patients: the heart, diaphragm, hila and vessels move
  and bend.

HU are interpolated bilinearly within each slice (the deformation is in-plane), the lung mask by nearest
neighbour; outside the image reads as air (-1024 HU).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["reshape_anatomy", "STRETCH", "CONTROL_MM", "DISPLACEMENT_MM"]

#: Independent in-plane scale range for the rows (anterior-posterior) and the columns (left-right).
STRETCH = (0.9, 1.1)
#: Spacing of the displacement field's control points (mm): organ-scale bends, not texture.
CONTROL_MM = 50.0
#: Standard deviation of each in-plane displacement component at the control points (mm).
DISPLACEMENT_MM = 4.0


def _smooth_displacement(rng: np.random.Generator, shape: tuple[int, int, int],
                         spacing_mm: tuple[float, float, float]) -> np.ndarray:
    """(z, 2, y, x) row and column displacements in voxels: random control points ``CONTROL_MM`` apart,
    interpolated bicubically in-plane and linearly between slices."""
    depth, rows, cols = shape
    coarse = [max(2, int(np.ceil(n * s / CONTROL_MM)) + 1) for n, s in zip(shape, spacing_mm)]
    points = np.clip(rng.standard_normal((coarse[0], 2, coarse[1], coarse[2])), -3.0, 3.0)
    points *= (DISPLACEMENT_MM / np.array(spacing_mm[1:]))[None, :, None, None]
    # control point j of n sits at pixel j * (size - 1) / (n - 1): the field spans the image corner to corner
    ys = np.linspace(0.0, coarse[1] - 1.0, rows)
    xs = np.linspace(0.0, coarse[2] - 1.0, cols)
    at = np.stack(np.meshgrid(ys, xs, indexing="ij"))
    planes = np.stack([[ndimage.map_coordinates(points[k, c], at, order=3, mode="nearest") for c in range(2)]
                       for k in range(coarse[0])]).astype(np.float32)  # (zc, 2, rows, cols)
    position = np.linspace(0.0, coarse[0] - 1.0, depth)
    below = np.minimum(np.floor(position).astype(int), coarse[0] - 2)
    weight = (position - below).astype(np.float32)[:, None, None, None]
    return planes[below] * (1.0 - weight) + planes[below + 1] * weight


def reshape_anatomy(rng: np.random.Generator, hu: np.ndarray, lung: np.ndarray,
                    spacing_mm: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(hu, lung) of a (z, y, x) block after a random in-plane stretch and smooth deformation (module docstring)."""
    depth, rows, cols = hu.shape
    stretch_y, stretch_x = rng.uniform(*STRETCH, size=2)
    lung = np.asarray(lung, dtype=bool)
    found_rows = np.flatnonzero(lung.any(axis=(0, 2)))
    found_cols = np.flatnonzero(lung.any(axis=(0, 1)))
    centre_y = (found_rows[0] + found_rows[-1]) / 2.0 if found_rows.size else (rows - 1) / 2.0
    centre_x = (found_cols[0] + found_cols[-1]) / 2.0 if found_cols.size else (cols - 1) / 2.0
    # where each output pixel comes from: undo the stretch about the centre, then the displacement
    base = np.stack(np.meshgrid(centre_y + (np.arange(rows) - centre_y) / stretch_y,
                                centre_x + (np.arange(cols) - centre_x) / stretch_x, indexing="ij")).astype(np.float32)
    displacement = _smooth_displacement(rng, hu.shape, spacing_mm)
    warped = np.empty((depth, rows, cols), dtype=np.float32)
    warped_lung = np.empty((depth, rows, cols), dtype=bool)
    for z in range(depth):  # the deformation is in-plane: 2D interpolation, 4 neighbours instead of 8
        source = base + displacement[z]
        ndimage.map_coordinates(np.asarray(hu[z], dtype=np.float32), source, output=warped[z], order=1,
                                mode="constant", cval=-1024.0)
        warped_lung[z] = ndimage.map_coordinates(lung[z].view(np.uint8), source, order=0, mode="constant", cval=0) > 0
    return warped, warped_lung
