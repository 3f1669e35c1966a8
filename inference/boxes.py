"""From the joint saliency to lesion boxes and a severity score (Hu et al. 2020, the weakly supervised detection).

The paper localises lesions without box labels: the joint IG saliency of a slice is taken in magnitude, smoothed with
a 5x5 Gaussian, binarised with the Isodata threshold (Ridler-Calvard: the level halfway between the means of the
two classes it separates, scale-free, so no tuned constant), cleaned with a morphological closing (dilation then
erosion), split into connected components, and each component above a minimum area becomes its minimal bounding
rectangle. Here the binary map is also kept: its part inside the lungs is a diseased slice's infected area on
images without HU (on HU images the pipeline measures opacity instead, ``inference.pipeline._infected_px``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_isodata

from .preprocess import CropGeometry

__all__ = ["Box", "LesionMap", "smoothed_magnitude", "blur5", "saliency_mask", "extract_lesions", "opacity_boxes",
           "infection_percent", "lung_volume_ml", "BOX_LABELS"]

#: Box label for a slice's predicted class (CONTRACTS.md box labels).
BOX_LABELS = {"COVID": "covid_lesion", "CAP": "cap_lesion"}
#: sigma and truncation giving exactly a 5x5 kernel (radius 2), sigma as OpenCV picks for ksize 5.
_SIGMA = 1.1
_TRUNCATE = 2.0 / _SIGMA
_CLOSING = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Box:
    """Inclusive original pixel indices (x = column) with a score in (0, 1] and a label."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float
    label: str

    def to_json(self) -> dict[str, int | float | str]:
        return {"x0": self.x0, "y0": self.y0, "x1": self.x1, "y1": self.y1, "score": round(self.score, 4),
                "label": self.label}


@dataclass
class LesionMap:
    """One slice's boxes and saliency-positive pixels (original grid), and how many of those lie in the lungs."""

    boxes: list[Box]
    positive: np.ndarray  # bool (rows, cols)
    infected_area_px: int


def smoothed_magnitude(saliency: np.ndarray) -> np.ndarray:
    """|saliency| smoothed with the paper's 5x5 Gaussian, in the grid it is given in (the model's input grid, where
    the paper smooths): the form in which the paper reads a map for localisation, and the maps the pipeline keeps.

    Why the maps are kept in this form and not raw: an IG map is a gradient times the input, speckled from pixel to
    pixel and of both signs, so its single largest pixel is a noisy pointer, and the viewer showed only its positive
    part; smoothed over 5x5 input pixels (about 3 mm of a 512-pixel slice at the default model's 112-pixel input)
    the largest value sits where attribution is dense, and the joint map shown is exactly what the boxes' Isodata
    step thresholds. ``bench/localisation.py`` (default 2.2.0), pointing game raw -> smoothed, on the default draw
    (111 explained slices with lesions) and ``--per-class 3 --phantom-patients 3 --seed 777`` (231): joint 0.550 ->
    0.541 and 0.662 -> 0.684, Conv3 0.523 -> 0.541 and 0.649 -> 0.671, Conv4 0.523 -> 0.613 and 0.580 -> 0.649,
    Conv5 0.631 -> 0.703 and 0.667 -> 0.675: better on every map but one, by amounts near the draws'
    spread (one slice is 0.009 and 0.004 of them).
    """
    return ndimage.gaussian_filter(np.abs(np.asarray(saliency, dtype=np.float64)), _SIGMA, truncate=_TRUNCATE)


def blur5(saliency: np.ndarray) -> np.ndarray:
    """:func:`smoothed_magnitude`, scaled to a maximum of 1 (Isodata is scale-free, and its histogram arithmetic
    fails on the ~1e-12 magnitudes a raw product of IG maps can have)."""
    blurred = smoothed_magnitude(saliency)
    peak = float(blurred.max())
    return blurred / peak if peak > 0 else blurred


def saliency_mask(saliency: np.ndarray, min_area_px: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """The salient region of a map: blur, Isodata threshold, closing, components of at least ``min_area_px``.

    Returns (labels, blurred): int labels 1..n of the kept components (0 elsewhere) and the blurred magnitude.
    """
    blurred = blur5(saliency)
    if float(np.ptp(blurred)) == 0.0:
        return np.zeros(blurred.shape, dtype=np.int32), blurred
    binary = blurred > threshold_isodata(blurred)
    binary = ndimage.binary_erosion(ndimage.binary_dilation(binary, _CLOSING), _CLOSING, border_value=1)
    labels, n = ndimage.label(binary)
    if n:
        sizes = ndimage.sum_labels(np.ones_like(labels), labels, np.arange(1, n + 1))
        small = np.flatnonzero(sizes < min_area_px) + 1
        labels[np.isin(labels, small)] = 0
        labels, _ = ndimage.label(labels > 0)
    return labels.astype(np.int32), blurred


def extract_lesions(joint: np.ndarray, geometry: CropGeometry, lung_mask: np.ndarray | None, label: str,
                    min_area_px: int = 30) -> LesionMap:
    """Boxes and severity of one slice from its joint saliency in the model's input grid.

    ``min_area_px`` is in input-grid pixels. Components lying wholly outside the lungs (saliency on the chest wall
    or the table) give no box. Scores are the component's mean blurred saliency over the slice's maximum.
    """
    labels, blurred = saliency_mask(joint, min_area_px)
    if lung_mask is not None:  # nothing outside the lungs becomes a box or counts as infection
        labels[~geometry.mask_to_output(lung_mask)] = 0
    boxes: list[Box] = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        component = labels[found] == index
        if not component.any():
            continue
        rows, cols = found
        x0, y0, x1, y1 = geometry.box_to_original(cols.start, rows.start, cols.stop - 1, rows.stop - 1)
        score = float(blurred[found][component].mean())
        boxes.append(Box(x0, y0, x1, y1, score, label))
    positive = geometry.map_to_original((labels > 0).astype(np.float32)) > 0.5
    inside = positive & lung_mask if lung_mask is not None else positive
    boxes.sort(key=lambda b: -b.score)
    return LesionMap(boxes=boxes, positive=positive, infected_area_px=int(inside.sum()))


def opacity_boxes(opacity: np.ndarray, salient: np.ndarray | None, label: str, min_area_px: int,
                  score: float) -> list[Box]:
    """Boxes of the slice's opacity components (``inference.opacity`` labels, original grid), ranked by how much of
    each the classifier's saliency points at: each 8-connected component of at least ``min_area_px`` pixels becomes
    its minimal box, scored by its share of the salient region (``salient``, dilated by 2 pixels; 1 when None).

    Why not the saliency components themselves: IG maps are sparse and offset from the lesion by the receptive
    field, so their boxes rarely overlap a lesion; the HU opacity outlines it, the saliency says which one is the
    disease. ``score`` (e.g. the slice's disease probability) times the component's share of salient pixels.
    """
    labels, n = ndimage.label(np.asarray(opacity) > 0, structure=np.ones((3, 3), dtype=bool))
    near = None if salient is None else ndimage.binary_dilation(np.asarray(salient, dtype=bool), iterations=2)
    ranked: list[tuple[float, int, Box]] = []
    for index, found in enumerate(ndimage.find_objects(labels), start=1):
        if found is None:
            continue
        component = labels[found] == index
        if int(component.sum()) < min_area_px:
            continue
        share = 1.0 if near is None else float((component & near[found]).mean())
        rows, cols = found
        box = Box(cols.start, rows.start, cols.stop - 1, rows.stop - 1,
                  float(np.clip(score * (0.5 + 0.5 * share), 1e-4, 1.0)), label)
        ranked.append((box.score, int(component.sum()), box))
    ranked.sort(key=lambda r: (-r[0], -r[1]))
    return [box for _, _, box in ranked]


def infection_percent(infected_px: int, lung_px: int) -> float:
    """Severity: infected lung area (``inference.pipeline._infected_px``) over lung area, in percent (0 when there
    is no lung)."""
    return 100.0 * infected_px / lung_px if lung_px else 0.0


def lung_volume_ml(lung_mask: np.ndarray, spacing_mm: tuple[float, float, float] | None) -> float | None:
    """Lung volume from the mask and voxel spacing; None when the spacing is unknown."""
    if spacing_mm is None:
        return None
    return float(lung_mask.sum()) * float(np.prod(spacing_mm)) / 1000.0
