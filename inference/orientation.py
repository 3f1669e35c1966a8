"""Analysing a DICOM series in the orientation the models were trained on, and giving the results back in its own.

Why: the classifier and the lung U-Net learned axial slices as scanners store a supine patient (columns running to
the patient's left, rows to the patient's back: ImageOrientationPatient 1\\0\\0\\0\\1\\0, spine at the bottom). A
prone scan is stored with its rows and columns reversed (-1\\0\\0\\0\\-1\\0, spine at the top), and the models read
it as another anatomy: the RICORD COVID-19 slabs and LIDC-IDRI-0003 turned by 180 degrees moved two of three
positives to CAP (one of them flagged outside the model's experience), the healthy scan from NP to CAP, and cut a
fifth of patient 1's lung mask. So an axial DICOM series is mirrored into that orientation for the analysis, and the
lung mask, opacity labels, boxes and maps are mirrored back, so they lie on the stored pixels the viewer shows.

DICOM only: a scanner writes ImageOrientationPatient from the patient's position, while a NIfTI file's affine is
often a placeholder (an identity written by a converter or a generator), and trusting it would turn a correctly drawn
image upside down. Series whose rows do not run along the patient's left-right axis (sagittal, coronal, rotated by 90
degrees) are left as stored.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from .boxes import Box
from .io import Volume
from .preprocess import CropGeometry

__all__ = ["canonical_axes", "canonical", "mirror", "mirror_box", "mirror_geometry"]

#: How closely a direction must follow a patient axis (cosine) for the series to count as axial.
AXIAL_COSINE = 0.8


def canonical_axes(volume: Volume) -> tuple[int, ...]:
    """The axes of ``volume.array`` (1: rows, 2: columns) to mirror so that columns run to the patient's left and
    rows to the patient's back; () for a series already so, without orientation, not axial, or not DICOM."""
    if volume.kind != "dicom-series":
        return ()
    iop = next((o for o in volume.image_orientation_patient if o), None)
    if iop is None:
        return ()
    row, column = np.asarray(iop[:3], dtype=float), np.asarray(iop[3:], dtype=float)
    if abs(row[0]) < AXIAL_COSINE or abs(column[1]) < AXIAL_COSINE:
        return ()
    return tuple(axis for axis, cosine in ((1, column[1]), (2, row[0])) if cosine < 0)


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
