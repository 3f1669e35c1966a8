"""Severity in Hounsfield units: the percentage of opacity (PO) and of high opacity (PHO) inside the lungs.

Why: the saliency-area "infection %" is the area of a sparse attribution threshold, not a measurement. Published
CT severity scores (Chaganti et al. 2020, Radiology: AI) measure the lung volume at opacity densities instead:

* **opacity**: lung voxels between -750 and +150 HU (ground glass, -750..-200, and consolidation, -200..+150);
* **high opacity**: the consolidation part (>= -200 HU), which hides the vessels;
* **vessels and airway walls are excluded**: they are also dense, but thin. An in-plane opening with a disk of
  ``structure_mm`` diameter removes structures thinner than it, and a voxel counts only where the surrounding lung
  (a Gaussian of ``context_mm``) is itself raised above aerated-lung density, which a single vessel in healthy lung
  is not.

Counted in every lung slice (``inference.pipeline``): counting only the slices the classifier called diseased made
the figure as wrong as the classifier. Parameters from ``bench/localisation.py``'s simulated studies (PO mean
absolute error 5.7 points over all slices against 9.3 with the former ones, on the auto lung mask; tuned on those
studies, so optimistic) and a look at the RICORD COVID-19 slabs: a 7 mm opening of the consolidation-density
voxels (against thick vessels) and a 5 mm one of all took the error to 5.2, but dropped 10-20 points of the real
patients' visible ground glass and consolidation (PO 42/33/36 % -> 26/12/24 %); the 5 mm opening alone costs them
4-6 points (38/27/32 %).
Per lung: the lung mask's two largest components, split at the midline when they touch, left/right in the
patient's sense when the image is in the usual radiological orientation (patient left on the image's right).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["GGO", "CONSOLIDATION", "GGO_HU", "HIGH_HU", "opacity_labels", "percentages", "aerated_baseline",
           "through_plane_interior"]

GGO, CONSOLIDATION = 1, 2
GGO_HU = (-750.0, -200.0)
HIGH_HU = (-200.0, 150.0)
#: Scanners, kernels, dose and inspiration move aerated lung between about -900 and -750 HU, so the thresholds
#: are also taken relative to this study's own aerated-lung level (the mode of the lung histogram, as the sliding
#: window W(Q, S) does for the classifier): a voxel is opacity only when it is at least ``GGO_ABOVE_BASELINE`` above
#: it, and its surroundings at least ``CONTEXT_ABOVE_BASELINE``.
GGO_ABOVE_BASELINE = 170.0
CONTEXT_ABOVE_BASELINE = 160.0
#: With widespread ground glass the mode of the lung voxels is the ground glass (-635 HU on a simulated 32 %
#: COVID-19 study) and nothing counted as opacity any more: when the mode lies above this quantile of the lung
#: voxels, the baseline is the mode of the least dense ``BASELINE_FRACTION`` of them instead.
BASELINE_FRACTION = 0.4
MODE_QUANTILE = 0.6
#: Slice spacing (mm) from which a lung pixel whose neighbour slice is not lung is a partial-volume rim, not
#: opacity (:func:`through_plane_interior`).
THICK_SLICE_MM = 5.0
#: Slices counted at a time by :func:`percentages`.
SLAB = 32


def _mode(values: np.ndarray) -> float:
    counts, edges = np.histogram(values, bins=50, range=(-1000, -500))
    return float(edges[int(np.argmax(counts))] + 5.0)


def aerated_baseline(hu: np.ndarray, lung: np.ndarray) -> float:
    """The study's aerated-lung level: the mode (10 HU bins) of its lung voxels between -1000 and -500 HU, or of
    their least dense ``BASELINE_FRACTION`` when the mode is ground glass (above the ``MODE_QUANTILE`` quantile)."""
    values = hu[lung]
    values = values[(values > -1000) & (values < -500)]
    if values.size == 0:
        return -850.0
    mode = _mode(values)
    if mode <= float(np.quantile(values, MODE_QUANTILE)):
        return mode
    return _mode(values[values <= np.quantile(values, BASELINE_FRACTION)])


def _disk(radius: float) -> np.ndarray:
    r = max(1, int(round(radius)))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (yy * yy + xx * xx) <= radius * radius + 0.5


def through_plane_interior(lung: np.ndarray, z: int, slice_mm: float | None) -> np.ndarray:
    """Slice ``z``'s lung pixels that are lung in the slices above and below as well, on slices at least
    ``THICK_SLICE_MM`` apart (the study's first and last slices have no neighbour on one side, which then counts as
    lung); every lung pixel of slice ``z`` on thinner slices or when the spacing is unknown.

    Why: on thick slices a pixel at the lung's edge in the through-plane direction (the diaphragm dome, the apex,
    wherever the lung surface runs oblique to the slices) shares its slice with the diaphragm, liver or chest wall,
    and its partial-volume density is that of ground glass: such rims made up most of the opacity counted in healthy
    lungs on 5-8 mm slices (``bench/localisation.py``). They are not counted as opacity (they stay lung). On thin
    slices the rim is thin, and what differs between neighbouring slices is mostly the lung mask's own hesitation
    over dense lesions (RICORD COVID-19 patient_2, 3 mm: the rule took 8 points of visible consolidation)."""
    inside = np.asarray(lung[z], dtype=bool).copy()
    if slice_mm is None or slice_mm < THICK_SLICE_MM:
        return inside
    if z > 0:
        inside &= lung[z - 1]
    if z + 1 < len(lung):
        inside &= lung[z + 1]
    return inside


def opacity_labels(hu: np.ndarray, lung: np.ndarray, pixel_mm: float = 0.7, structure_mm: float = 5.0,
                   context_mm: float = 4.0, baseline: float | None = None,
                   counted: np.ndarray | None = None, slice_mm: float | None = None) -> np.ndarray:
    """uint8 labels like ``hu`` (2D or 3D): 0 none, 1 ground glass, 2 consolidation; only inside ``lung``.

    ``baseline``: the study's aerated-lung level (:func:`aerated_baseline`), measured here when not given (give it
    when labelling one slice of a study, so every slice uses the whole study's level). ``counted``: where a pixel
    may be labelled, within the lung; by default every lung pixel of a 2D slice and the through-plane interior
    (:func:`through_plane_interior`, with the slice spacing ``slice_mm``) of a 3D volume's (give it when labelling
    one slice of a study)."""
    hu = np.asarray(hu, dtype=np.float32)
    lung = np.asarray(lung, dtype=bool)
    squeeze = hu.ndim == 2
    if squeeze:
        hu, lung = hu[None], lung[None]
        counted = None if counted is None else np.asarray(counted, dtype=bool)[None]
    out = np.zeros(hu.shape, dtype=np.uint8)
    disk = _disk(structure_mm / 2.0 / max(pixel_mm, 1e-3))
    baseline = aerated_baseline(hu, lung) if baseline is None else baseline
    sigma = context_mm / max(pixel_mm, 1e-3)
    # Every input of a slice's filters is zero outside its lung, so they run on the lung's bounding box plus the
    # reach of the Gaussian (its truncation radius) and of the disk: the same sums in the same order as on the whole
    # slice (bit for bit), on a fraction of its pixels. The Gaussians are read only at the opened dense pixels, so
    # they run on those pixels' box plus the reach (none at all on a slice the opening leaves empty).
    reach = max(int(4.0 * sigma + 0.5), disk.shape[0] // 2) + 1
    for z in range(hu.shape[0]):
        box = _box(lung[z], reach)
        if box is None:
            continue
        inside, hu_z = lung[z][box], hu[z][box]
        dense = inside & (hu_z >= max(GGO_HU[0], baseline + GGO_ABOVE_BASELINE)) & (hu_z <= HIGH_HU[1])
        if not dense.any():
            continue
        dense = _opening(dense, disk)
        near = _box(dense, reach)
        if near is None:
            continue
        # Mean HU of the surrounding lung only (normalised convolution: the chest wall does not leak in).
        around, hu_near = inside[near], hu_z[near]
        weight = ndimage.gaussian_filter(around.astype(np.float32), sigma)
        context = ndimage.gaussian_filter(np.where(around, np.clip(hu_near, -1024, 150), 0).astype(np.float32), sigma)
        dense[near] &= context > (baseline + CONTEXT_ABOVE_BASELINE) * np.maximum(weight, 1e-3)
        dense &= (through_plane_interior(lung, z, slice_mm) if counted is None else counted[z])[box]
        labels = out[z][box]
        labels[dense] = GGO
        labels[dense & (hu_z >= HIGH_HU[0])] = CONSOLIDATION
    return out[0] if squeeze else out


def _opening(mask: np.ndarray, disk: np.ndarray) -> np.ndarray:
    """``ndimage.binary_opening(mask, structure=disk)`` of a 2D mask (outside the image counts as background), as
    the same erosion and dilation by the disk's rows: each row of a disk is a centred run of pixels, and a run's
    erosion or dilation is a count over a sliding window (cumulative sums), exact and several times faster than
    visiting every pixel of the disk at every pixel."""
    r = disk.shape[0] // 2
    rows = {dy - r: int(disk[dy].sum()) // 2 for dy in range(disk.shape[0]) if disk[dy].any()}
    eroded = _stack_rows(mask, rows, erode=True)
    return _stack_rows(eroded, rows, erode=False)


def _stack_rows(mask: np.ndarray, rows: dict[int, int], erode: bool) -> np.ndarray:
    """Erosion (all of) or dilation (any of) of ``mask`` by the disk whose row ``dy`` spans columns -w..w
    (``rows[dy] = w``); pixels outside the image are background."""
    height, width = mask.shape
    pad = max(rows.values())
    # cum[:, pad + k] = mask pixels of the row left of column k, constant beyond the image on either side
    cum = np.zeros((height, width + 1 + 2 * pad), dtype=np.int32)
    np.cumsum(mask, axis=1, out=cum[:, pad + 1:pad + 1 + width])
    cum[:, pad + 1 + width:] = cum[:, pad + width:pad + 1 + width]
    runs = {}
    for w in set(rows.values()):  # pixels in the window x-w..x+w (clipped to the image) of each x
        count = cum[:, pad + w + 1:pad + w + 1 + width] - cum[:, pad - w:pad - w + width]
        runs[w] = count == 2 * w + 1 if erode else count > 0
    out = np.full(mask.shape, erode, dtype=bool)
    for dy, w in rows.items():
        if abs(dy) >= height:  # the row lies outside the image for every y: background
            if erode:
                out[:] = False
            continue
        run = runs[w]
        src = run[max(0, dy):height + min(0, dy)]  # row y + dy of the run, for the rows y where it exists
        dst = out[max(0, -dy):height - max(0, dy)]
        if erode:
            dst &= src
            out[:max(0, -dy)] = False  # y + dy above the image: background
            out[height - max(0, dy):] = False
        else:
            dst |= src
    return out


def _box(mask: np.ndarray, margin: int) -> tuple[slice, slice] | None:
    """The bounding box of a 2D mask grown by ``margin`` on every side (clipped to the image); None when empty."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return (slice(max(0, rows[0] - margin), rows[-1] + 1 + margin),
            slice(max(0, cols[0] - margin), cols[-1] + 1 + margin))


def percentages(labels: np.ndarray, lung: np.ndarray) -> dict[str, object]:
    """``{"percent", "high_percent", "per_lung": {"left", "right"}}`` of the lung volume (voxel counts).

    The lungs are split at the midline of the lung mask's columns: the image's left half is the patient's right
    lung (radiological convention). Counted per image column a slab of ``SLAB`` slices at a time, so no
    temporary the size of the study is made."""
    lung = np.asarray(lung, dtype=bool)
    labels = np.asarray(labels)
    rows, cols = lung.shape[-2:]
    lung3, labels3 = lung.reshape(-1, rows, cols), labels.reshape(-1, rows, cols)
    lung_cols, opaque_cols = np.zeros(cols, np.int64), np.zeros(cols, np.int64)
    opaque, high = 0, 0
    for start in range(0, lung3.shape[0], SLAB):
        inside, slab = lung3[start:start + SLAB], labels3[start:start + SLAB]
        lung_cols += np.count_nonzero(inside, axis=(0, 1))
        opaque_cols += np.count_nonzero((slab > 0) & inside, axis=(0, 1))
        opaque += int(np.count_nonzero(slab))
        high += int(np.count_nonzero(slab == CONSOLIDATION))
    total = int(lung_cols.sum())

    def pct(part: int, whole: int) -> float:
        return round(100.0 * part / whole, 3) if whole else 0.0

    present = np.flatnonzero(lung_cols)
    mid = (present[0] + present[-1] + 1) // 2 if present.size else cols
    return {"percent": pct(opaque, total), "high_percent": pct(high, total),
            "per_lung": {"left": pct(int(opaque_cols[mid:].sum()), int(lung_cols[mid:].sum())),
                         "right": pct(int(opaque_cols[:mid].sum()), int(lung_cols[:mid].sum()))}}
