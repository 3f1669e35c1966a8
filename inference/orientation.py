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
scripts, which turn them before use, are MosMedData's volumes and the ``coronacases`` ones of the COVID-19 CT
segmentation set, both with radiologists' infection masks), and read as stored they show the spine at the top. So a
NIfTI volume is judged by its anatomy: a patient lies on the back, and gravity makes the lowest (dependent) lung
denser (:func:`dependent_gradient_hu`). That is a hint, not proof: on the real scans in ``../shared`` it is 26-228
HU in the right direction (one CT angiogram slab shows no mid-lung slice), but over 70 simulated 70 mm slabs of real
backgrounds it ran 20 HU or more the wrong way on 8 (the upper lobes of two patients run that way), so
:func:`looks_upside_down` only nominates a volume, and ``inference.pipeline.study_axes`` turns it when the
classifier also finds the turned image the more familiar (``inference.domain``). Series whose rows do not run along
the patient's left-right axis (sagittal, coronal, rotated by 90 degrees) are left as stored.
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

__all__ = ["canonical_axes", "canonical", "dependent_gradient_hu", "looks_upside_down", "mirror", "mirror_box",
           "mirror_geometry"]

#: How closely a direction must follow a patient axis (cosine) for the series to count as axial.
AXIAL_COSINE = 0.8
#: A NIfTI volume looks upside down when its lung is denser at the top than at the bottom by at least this much (HU):
#: below the smallest gradient of a real upright scan that shows one (26 HU, LIDC-IDRI-0002; module docstring).
DEPENDENT_TURNED_HU = 20.0
#: Aerated lung for the gradient: denser than emphysema and bowel gas, lighter than consolidation.
_LUNG_HU = (-950.0, -500.0)
#: Slices sampled (evenly over the volume), the least share of a slice's body the lung must fill for the slice to
#: count (a mid-lung slice), and the least lung pixels a quarter of its lung rows must hold.
_SAMPLES = 15
_MID_LUNG = 0.15
_MIN_PIXELS = 50


def canonical_axes(volume: Volume) -> tuple[int, ...]:
    """The axes of ``volume.array`` (1: rows, 2: columns) to mirror so that columns run to the patient's left and
    rows to the patient's back, from a DICOM series' orientation; () for a series already so, without orientation,
    not axial, or not DICOM (a NIfTI volume: :func:`looks_upside_down`)."""
    if volume.kind != "dicom-series":
        return ()
    iop = next((o for o in volume.image_orientation_patient if o), None)
    if iop is None:
        return ()
    row, column = np.asarray(iop[:3], dtype=float), np.asarray(iop[3:], dtype=float)
    if abs(row[0]) < AXIAL_COSINE or abs(column[1]) < AXIAL_COSINE:
        return ()
    return tuple(axis for axis, cosine in ((1, column[1]), (2, row[0])) if cosine < 0)


def looks_upside_down(volume: Volume) -> bool:
    """Whether a NIfTI HU volume's lung is denser at the top of its slices than at the bottom by
    ``DEPENDENT_TURNED_HU`` or more: stored with the patient's back at the top (a hint; see the module docstring)."""
    if volume.kind != "nifti" or not volume.is_hu:
        return False
    gradient = dependent_gradient_hu(volume.array)
    return gradient is not None and gradient <= -DEPENDENT_TURNED_HU


def dependent_gradient_hu(array: np.ndarray) -> float | None:
    """How much denser (HU) the aerated lung is at the bottom of the image than at the top: the median, over the
    mid-lung slices among ``_SAMPLES`` spread over a (slices, rows, columns) HU volume, of each slice's median lung
    density in the bottom quarter of its lung rows minus that in the top quarter. Positive for a patient lying on the
    back stored with the back at the bottom, negative for the same image upside down; None when no sampled slice is
    a mid-lung one.

    Lung here is -950..-500 HU inside the body (the largest component above -400 HU, holes filled). Mid-lung: the
    lung fills at least ``_MID_LUNG`` of the body's cross-section: near the apex and the bases the gradient is no
    guide (the lung is a rim beside the diaphragm, the heart or the first ribs); over the 529 slices of the real
    scans here, 9.5 % of all slices run 20 HU or more the wrong way, 4 % of those with lung over 15 % of the body.
    About 0.1 s for a 512 x 512 study."""
    n = array.shape[0]
    gradients = []
    for k in np.unique(np.linspace(0, n - 1, min(n, _SAMPLES)).round().astype(int)):
        hu = np.asarray(array[k], dtype=np.float32)
        labels, found = ndimage.label(hu > -400.0)
        if not found:
            continue
        body = ndimage.binary_fill_holes(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        lung = body & (hu > _LUNG_HU[0]) & (hu < _LUNG_HU[1])
        rows = np.flatnonzero(lung.any(axis=1))
        if rows.size < 6 or lung.sum() < _MID_LUNG * body.sum():
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
def canonical(volume: Volume, axes: tuple[int, ...] | None = None) -> Iterator[tuple[int, ...]]:
    """Inside, ``volume.array`` is in the models' orientation (mirrored in place along ``axes``, by default
    ``canonical_axes``, which it yields, or replaced by a mirrored copy when it is read-only); on leaving, even by
    an exception, it is as stored again."""
    axes = canonical_axes(volume) if axes is None else axes
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
