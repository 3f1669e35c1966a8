"""Analysing a study in the orientation the models were trained on, and giving the results back in its own.

Why: the classifier and the lung U-Net learned axial slices as scanners store a supine patient (columns running to
the patient's left, rows to the patient's back: ImageOrientationPatient 1\\0\\0\\0\\1\\0, spine at the bottom). A
prone scan is stored with its rows and columns reversed (-1\\0\\0\\0\\-1\\0, spine at the top), and the models read
it as another anatomy: the RICORD COVID-19 slabs and LIDC-IDRI-0003 turned by 180 degrees moved two of three
positives to CAP (one of them flagged outside the model's experience), the healthy scan from NP to CAP, and cut a
fifth of patient 1's lung mask. So an axial DICOM series is mirrored into that orientation for the analysis, and the
lung mask, opacity labels, boxes and maps are mirrored back, so they lie on the stored pixels the viewer shows.

A DICOM series is turned by its ImageOrientationPatient, which the scanner writes from the patient's position. A
NIfTI file's affine is often a placeholder (an identity written by a converter or a generator), and trusting it
would turn a correctly drawn image upside down; yet NIfTI volumes are often stored with their rows running from the
back to the front (converters that make the array follow the RAS axes do; so, by the public COVIDNet-CT data
scripts, which turn them before use, are the ``coronacases`` volumes of the COVID-19 CT segmentation set with
radiologists' infection masks), and read as stored they show the spine at the top: another anatomy to the models. So
a NIfTI volume is turned by its anatomy instead: a patient lies on the back, and gravity makes the lowest
(dependent) lung denser (:func:`dependent_gradient_hu`). On the real scans in ``../shared`` (5 whole scans, 8 slabs,
2 single slices) the lung in the bottom quarter of the lungs' rows is 29-218 HU denser than in the top quarter
(phantoms 33-41 HU), but on one slab, a contrast CT angiogram, where it is -7 HU: it cannot tell there. A NIfTI
volume whose gradient runs at least ``DEPENDENT_TURNED_HU`` the other way is mirrored top to bottom (every one of
those scans stored upside down would be: -29 to -218 HU), anything less certain is analysed as stored. (The spine's
side, bone behind the body's centre, was tried and dropped: on contrast scans the heart and great vessels are as
dense as bone.) Series whose rows do not run along the patient's left-right axis (sagittal, coronal, rotated by 90
degrees) are left as stored.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
from scipy import ndimage

from .boxes import Box
from .io import Volume
from .preprocess import CropGeometry

__all__ = ["canonical_axes", "canonical", "dependent_gradient_hu", "mirror", "mirror_box", "mirror_geometry"]

#: How closely a direction must follow a patient axis (cosine) for the series to count as axial.
AXIAL_COSINE = 0.8
#: A NIfTI volume is turned when its lung is denser at the top than at the bottom by at least this much (HU): two
#: thirds of the smallest gradient of a real upright scan that shows one (29.5 HU, LIDC-IDRI-0002; module docstring).
DEPENDENT_TURNED_HU = 20.0
#: Aerated lung for the gradient: denser than emphysema and bowel gas, lighter than consolidation.
_LUNG_HU = (-950.0, -500.0)
#: Slices sampled (evenly over the middle 60 % of the volume) and the least lung a quarter of a slice must show.
_SAMPLES = 9
_MIN_PIXELS = 50


def canonical_axes(volume: Volume) -> tuple[int, ...]:
    """The axes of ``volume.array`` (1: rows, 2: columns) to mirror so that columns run to the patient's left and
    rows to the patient's back; () for a series already so, without orientation, not axial, or neither DICOM nor
    NIfTI. A NIfTI volume is turned top to bottom by its anatomy alone (:func:`dependent_gradient_hu`)."""
    if volume.kind == "nifti" and volume.is_hu:
        gradient = dependent_gradient_hu(volume.array)
        return (1,) if gradient is not None and gradient <= -DEPENDENT_TURNED_HU else ()
    if volume.kind != "dicom-series":
        return ()
    iop = next((o for o in volume.image_orientation_patient if o), None)
    if iop is None:
        return ()
    row, column = np.asarray(iop[:3], dtype=float), np.asarray(iop[3:], dtype=float)
    if abs(row[0]) < AXIAL_COSINE or abs(column[1]) < AXIAL_COSINE:
        return ()
    return tuple(axis for axis, cosine in ((1, column[1]), (2, row[0])) if cosine < 0)


def dependent_gradient_hu(array: np.ndarray) -> float | None:
    """How much denser (HU) the aerated lung is at the bottom of the image than at the top: over ``_SAMPLES`` slices
    of the middle 60 % of a (slices, rows, columns) HU volume, the median of each slice's median lung density in the
    bottom quarter of its lung rows minus that in the top quarter. Positive for a patient lying on the back stored with
    the back at the bottom, negative for the same image upside down; None when no sampled slice shows enough lung.

    Lung here is -950..-500 HU inside the body (the largest component above -400 HU, holes filled); about 50 ms for
    a 512 x 512 study."""
    n = array.shape[0]
    picks = np.unique(np.linspace(int(0.2 * n), max(int(0.2 * n), int(0.8 * n) - 1), min(n, _SAMPLES)).astype(int))
    gradients = []
    for k in picks:
        hu = np.asarray(array[k], dtype=np.float32)
        labels, found = ndimage.label(hu > -400.0)
        if not found:
            continue
        body = ndimage.binary_fill_holes(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        lung = body & (hu > _LUNG_HU[0]) & (hu < _LUNG_HU[1])
        rows = np.flatnonzero(lung.any(axis=1))
        if rows.size < 6:
            continue
        quarter = (rows[-1] - rows[0]) / 4.0
        top, bottom = int(rows[0] + quarter), int(rows[-1] - quarter) + 1
        upper, lower = hu[:top][lung[:top]], hu[bottom:][lung[bottom:]]
        if upper.size >= _MIN_PIXELS and lower.size >= _MIN_PIXELS:
            gradients.append(float(np.median(lower)) - float(np.median(upper)))
    return float(np.median(gradients)) if gradients else None


def mirror(array: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """``array`` (slices, rows, columns) mirrored along ``axes`` in place, a slice at a time (no copy of the whole);
    mirroring twice restores it."""
    if axes:
        in_plane = tuple(axis - 1 for axis in axes)
        for k in range(array.shape[0]):
            array[k] = np.flip(array[k], in_plane).copy()
    return array


@contextmanager
def canonical(volume: Volume) -> Iterator[tuple[int, ...]]:
    """Inside, ``volume.array`` is in the models' orientation (mirrored in place along ``canonical_axes``, which it
    yields, or replaced by a mirrored copy when it is read-only); on leaving, even by an exception, it is as stored
    again."""
    axes = canonical_axes(volume)
    stored = volume.array
    if axes and not stored.flags.writeable:  # a read-only array (memory-mapped, shared): a mirrored copy instead
        volume.array = np.ascontiguousarray(np.flip(stored, axes))
        try:
            yield axes
        finally:
            volume.array = stored
        return
    mirror(stored, axes)
    try:
        yield axes
    finally:
        mirror(stored, axes)


def mirror_geometry(geometry: CropGeometry, axes: tuple[int, ...]) -> CropGeometry:
    """The same crop in the image mirrored along ``axes``."""
    rows, columns = geometry.shape
    if 1 in axes:
        geometry = replace(geometry, y0=rows - geometry.y1, y1=rows - geometry.y0)
    if 2 in axes:
        geometry = replace(geometry, x0=columns - geometry.x1, x1=columns - geometry.x0)
    return geometry


def mirror_box(box: Box, shape: tuple[int, int], axes: tuple[int, ...]) -> Box:
    """An inclusive pixel box in an image of ``shape`` (rows, columns), mirrored along ``axes``."""
    rows, columns = shape
    if 1 in axes:
        box = replace(box, y0=rows - 1 - box.y1, y1=rows - 1 - box.y0)
    if 2 in axes:
        box = replace(box, x0=columns - 1 - box.x1, x1=columns - 1 - box.x0)
    return box
