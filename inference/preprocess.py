"""Lung crop and resize to the classifier's input, and the way back to original pixels.

The classifier sees a square crop around the lungs resized to 224x224 (more lung pixels per input pixel than the
whole 512x512 slice). Everything the model produces (boxes, saliency, CAMs) lives in that 224 space; CropGeometry
records the crop so it can be mapped back to the slice's own pixels, where boxes are stored and shown.

Conventions: ``x`` is the column, ``y`` the row; pixel ``i`` covers ``[i, i+1)`` and its centre is ``i + 0.5``.
Resizing is bilinear with antialiasing (torch), whose sampling grid uses exactly that half-pixel convention, so
``to_original`` is the inverse of the resize.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
import torch.nn.functional as F

__all__ = ["CropGeometry", "crop_geometry", "prepare_slice", "resize_map", "pixel_size_mm", "near_lungs_only",
           "reach_px"]

#: The in-plane pixel size (mm) assumed for a study that states none: a typical chest CT's.
DEFAULT_PIXEL_MM = 0.7


def pixel_size_mm(spacing_mm: tuple[float, ...] | None) -> float:
    """The in-plane pixel size (mm) of a study's (z, y, x) spacing; ``DEFAULT_PIXEL_MM`` when it has none."""
    return float(spacing_mm[1]) if spacing_mm is not None else DEFAULT_PIXEL_MM


#: The blanking reach (mm) a bundle, a training run or the API may ask for: above 0, and at most this (farther from
#: the lungs than this there is no chest left to blank).
OUTSIDE_LUNGS_MM_MAX = 200.0


def check_outside_lungs_mm(outside_lungs_mm: float | None) -> float | None:
    """``outside_lungs_mm`` as a float, or None (keep the whole crop); ValueError unless 0 < mm <=
    ``OUTSIDE_LUNGS_MM_MAX``. One check for the bundle loader, training's ``PrepConfig`` and the API, so a run can
    never write a bundle the loader refuses."""
    if outside_lungs_mm is None:
        return None
    if isinstance(outside_lungs_mm, bool) or not isinstance(outside_lungs_mm, int | float) \
            or not 0 < outside_lungs_mm <= OUTSIDE_LUNGS_MM_MAX:
        raise ValueError(f"outside_lungs_mm must be a distance in mm above 0 and at most {OUTSIDE_LUNGS_MM_MAX:g}, "
                         f"not {outside_lungs_mm!r}")
    return float(outside_lungs_mm)


def reach_px(outside_lungs_mm: float | None, spacing_mm: tuple[float, ...] | None) -> float | None:
    """``outside_lungs_mm`` (a bundle's ``crop.outside_lungs_mm``) in the study's pixels, for
    :func:`prepare_slice`; None (keep the whole crop) stays None. One conversion, so training and the pipeline blank
    the same margin."""
    return None if outside_lungs_mm is None else float(outside_lungs_mm) / pixel_size_mm(spacing_mm)


@dataclass(frozen=True)
class CropGeometry:
    """A crop ``[y0, y1) x [x0, x1)`` of an image of ``shape`` (rows, cols), resized to ``size`` x ``size``."""

    y0: int
    x0: int
    y1: int
    x1: int
    shape: tuple[int, int]
    size: int = 224

    @property
    def scale_y(self) -> float:
        """Original pixels per output pixel along rows."""
        return (self.y1 - self.y0) / self.size

    @property
    def scale_x(self) -> float:
        return (self.x1 - self.x0) / self.size

    def to_original(self, x: float, y: float) -> tuple[float, float]:
        """A point (pixel-index coordinates, centres at integers) in the output grid -> the same in the original."""
        return (self.x0 + (x + 0.5) * self.scale_x - 0.5, self.y0 + (y + 0.5) * self.scale_y - 0.5)

    def box_to_original(self, x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
        """An inclusive pixel box in the output grid -> the inclusive box of original pixels it covers (clipped)."""
        rows, cols = self.shape
        ox0 = math.floor(self.x0 + x0 * self.scale_x + 1e-6)
        oy0 = math.floor(self.y0 + y0 * self.scale_y + 1e-6)
        ox1 = math.ceil(self.x0 + (x1 + 1) * self.scale_x - 1e-6) - 1
        oy1 = math.ceil(self.y0 + (y1 + 1) * self.scale_y - 1e-6) - 1
        return (max(0, ox0), max(0, oy0), min(cols - 1, max(ox0, ox1)), min(rows - 1, max(oy0, oy1)))

    def mask_to_output(self, mask: np.ndarray) -> np.ndarray:
        """A bool (rows, cols) mask of the original image -> bool (size, size) in the output grid (area share > 0.5)."""
        crop = np.asarray(mask, dtype=np.float32)[self.y0:self.y1, self.x0:self.x1]
        return resize_map(crop, (self.size, self.size)) > 0.5

    def map_to_original(self, map_out: np.ndarray | torch.Tensor) -> np.ndarray:
        """A (size, size) map in the output grid -> float32 (rows, cols): resized into the crop, zero outside it."""
        rows, cols = self.shape
        full = np.zeros((rows, cols), dtype=np.float32)
        full[self.y0:self.y1, self.x0:self.x1] = resize_map(map_out, (self.y1 - self.y0, self.x1 - self.x0))
        return full


def resize_map(image: np.ndarray | torch.Tensor, out_shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2D map (antialiased when shrinking), half-pixel centres; float32 numpy out."""
    t = torch.as_tensor(np.asarray(image, dtype=np.float32) if not isinstance(image, torch.Tensor) else image)
    t = t.detach().to(torch.float32).cpu()[None, None]
    if tuple(t.shape[-2:]) == tuple(out_shape):
        return t[0, 0].numpy().copy()
    shrink = out_shape[0] < t.shape[-2] or out_shape[1] < t.shape[-1]
    out = F.interpolate(t, size=out_shape, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0, 0].numpy()


def crop_geometry(lung_mask_2d: np.ndarray | None, margin: float, shape: tuple[int, int],
                  size: int = 224) -> CropGeometry:
    """The lung bounding box, padded by ``margin`` x its longer side on every side, made square, kept in the image.

    Squaring keeps the aspect ratio through the resize (no anatomical distortion). The square is shifted, not cut,
    when it pokes out of the image, and only clipped when it is larger than the image. No lung (or no mask): the
    whole image.
    """
    rows, cols = int(shape[0]), int(shape[1])
    if lung_mask_2d is None or not np.any(lung_mask_2d):
        return CropGeometry(0, 0, rows, cols, (rows, cols), size)
    ys = np.flatnonzero(np.any(lung_mask_2d, axis=1))
    xs = np.flatnonzero(np.any(lung_mask_2d, axis=0))
    by0, by1, bx0, bx1 = ys[0], ys[-1] + 1, xs[0], xs[-1] + 1
    side = max(by1 - by0, bx1 - bx0)
    side = int(math.ceil(side * (1.0 + 2.0 * margin)))
    cy, cx = (by0 + by1) / 2.0, (bx0 + bx1) / 2.0

    def place(centre: float, extent: int) -> tuple[int, int]:
        length = min(side, extent)
        start = int(round(centre - length / 2.0))
        start = min(max(0, start), extent - length)
        return start, start + length

    y0, y1 = place(cy, rows)
    x0, x1 = place(cx, cols)
    return CropGeometry(y0, x0, y1, x1, (rows, cols), size)


def prepare_slice(slice01: np.ndarray, geometry: CropGeometry, size: int = 224, lung: np.ndarray | None = None,
                  reach_px: float | None = None) -> np.ndarray:
    """Crop a [0, 1] slice with ``geometry`` and resize it to the model input: float32 (size, size). With ``lung``
    (the slice's bool lung mask) and ``reach_px`` (original pixels), what lies farther than that from the lungs is
    blanked (:func:`near_lungs_only`)."""
    if size != geometry.size:
        raise ValueError(f"geometry was made for size {geometry.size}, asked for {size}")
    crop = np.asarray(slice01, dtype=np.float32)[geometry.y0:geometry.y1, geometry.x0:geometry.x1]
    out = resize_map(crop, (size, size))
    if lung is not None and reach_px is not None:
        out = near_lungs_only(out, geometry.mask_to_output(lung), reach_px / geometry.scale_x)
    return out


def near_lungs_only(image: np.ndarray, lung: np.ndarray, reach_px: float) -> np.ndarray:
    """``image`` with every pixel farther than ``reach_px`` from ``lung`` (both in the same grid) set to 0, the
    window's floor (air); unchanged when the slice has no lung.

    Why (a bundle's ``crop.outside_lungs_mm``): the lung crop also shows the spine, the heart and the chest wall,
    which differ from patient to patient and carry no label (every real background appears in every class), so a
    classifier can only learn patient-specific noise there; a new patient's anatomy then moves its decision. The
    reach keeps a margin around the lungs, where consolidation the lung mask missed at the pleura still lies."""
    if not lung.any():
        return image
    far = ndimage.distance_transform_edt(~lung) > reach_px
    return np.where(far, np.float32(0.0), image).astype(np.float32, copy=False)
