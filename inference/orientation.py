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
NIfTI volume is judged by its anatomy, by two signs that must agree (:func:`looks_upside_down`):

* a patient lies on the back, and gravity makes the lowest (dependent) lung denser (:func:`dependent_gradient_hu`).
  A hint, not proof: on the real scans in ``../shared`` it is 26-228 HU in the right direction (one CT angiogram
  slab shows no mid-lung slice), but over 70 simulated 70 mm slabs of real backgrounds it ran 20 HU or more the
  wrong way on 8 (the upper lobes of two patients run that way);
* most of a chest slice's cortical bone (the spine and its arches, the posterior ribs, the scapulae) lies behind the
  lungs' centre (:func:`posterior_bone_share`): 0.67-0.97 of the pixels above 500 HU on the real scans here, 0.62-0.68
  on the phantom; contrast-filled vessels stay below 500 HU and the sternum is small.

The second sign replaced the classifier's feature distance (the turned slices the more familiar), which a model
trained on slices blanked beyond the lungs can no longer judge, and which made the orientation depend on the model.
Series whose rows do not run along the patient's left-right axis (sagittal, coronal, rotated by 90 degrees) are
left as stored.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import numpy as np
from scipy import ndimage

from .boxes import Box
from .io import Volume
from .preprocess import CropGeometry

__all__ = ["canonical_axes", "canonical", "dependent_gradient_hu", "looks_upside_down", "mirror", "mirror_box",
           "mirror_geometry", "posterior_bone_share", "study_axes"]

#: How closely a direction must follow a patient axis (cosine) for the series to count as axial.
AXIAL_COSINE = 0.8
#: A NIfTI volume looks upside down when its lung is denser at the top than at the bottom by at least this much (HU):
#: below the smallest gradient of a real upright scan that shows one (26 HU, LIDC-IDRI-0002; module docstring).
DEPENDENT_TURNED_HU = 20.0
#: A NIfTI volume looks upside down only when under this share of its bone lies below the lungs' centre (upright
#: chest slices: 0.62 and above, module docstring).
BONE_BELOW_UPRIGHT = 0.5
#: Cortical bone: above contrast-filled vessels and consolidation.
_BONE_HU = 500.0
#: Aerated lung for the gradient: denser than emphysema and bowel gas, lighter than consolidation.
_LUNG_HU = (-950.0, -500.0)
#: Slices sampled (evenly over the volume), the least share of a slice's body the lung must fill for the slice to
#: count (a mid-lung slice), the least lung pixels a quarter of its lung rows must hold, and the least bone pixels.
_SAMPLES = 15
_MID_LUNG = 0.15
_MIN_PIXELS = 50
_MIN_BONE = 20


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


def study_axes(volume: Volume) -> tuple[int, ...]:
    """The axes to mirror ``volume`` along for the analysis: a DICOM series' own orientation (:func:`canonical_axes`);
    rows (1,) for a NIfTI volume whose anatomy says it is stored upside down (:func:`looks_upside_down`, with a
    warning the CLI lists among the reading warnings); else ()."""
    axes = canonical_axes(volume)
    if not axes and looks_upside_down(volume):
        warnings.warn(f"{volume.path or 'the volume'}: stored upside down (its lowest lung is at the top of the "
                      "slices, its spine above the lungs): analysed turned, results on the stored pixels",
                      stacklevel=2)
        return (1,)
    return axes


def looks_upside_down(volume: Volume) -> bool:
    """Whether a NIfTI HU volume shows its patient's back at the top of its slices: its lung denser at the top than
    at the bottom by ``DEPENDENT_TURNED_HU`` or more, and under ``BONE_BELOW_UPRIGHT`` of its bone below the lungs'
    centre (either sign alone has turned upright scans; see the module docstring)."""
    if volume.kind != "nifti" or not volume.is_hu:
        return False
    gradient = dependent_gradient_hu(volume.array)
    if gradient is None or gradient > -DEPENDENT_TURNED_HU:
        return False
    share = posterior_bone_share(volume.array)
    return share is not None and share < BONE_BELOW_UPRIGHT


def _mid_lung_slices(array: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(HU slice, body, aerated lung) of the mid-lung slices among ``_SAMPLES`` spread over a (slices, rows, columns)
    HU volume. Body: the largest component above -400 HU, holes filled; lung: -950..-500 HU inside it. Mid-lung:
    the lung fills at least ``_MID_LUNG`` of the body's cross-section over at least 6 rows (near the apex and the
    bases the lung is a rim beside the diaphragm, the heart or the first ribs and neither sign is a guide)."""
    n = array.shape[0]
    for k in np.unique(np.linspace(0, n - 1, min(n, _SAMPLES)).round().astype(int)):
        hu = np.asarray(array[k], dtype=np.float32)
        labels, found = ndimage.label(hu > -400.0)
        if not found:
            continue
        body = ndimage.binary_fill_holes(labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        lung = body & (hu > _LUNG_HU[0]) & (hu < _LUNG_HU[1])
        if np.count_nonzero(lung.any(axis=1)) >= 6 and lung.sum() >= _MID_LUNG * body.sum():
            yield hu, body, lung


def dependent_gradient_hu(array: np.ndarray) -> float | None:
    """How much denser (HU) the aerated lung is at the bottom of the image than at the top: the median, over the
    mid-lung slices (:func:`_mid_lung_slices`), of each slice's median lung density in the bottom quarter of its
    lung rows minus that in the top quarter. Positive for a patient lying on the back stored with the back at the
    bottom, negative for the same image upside down; None when no sampled slice is a mid-lung one.

    Over the 529 slices of the real scans here, 9.5 % of all slices run 20 HU or more the wrong way, 4 % of the
    mid-lung ones. About 0.1 s for a 512 x 512 study."""
    gradients = []
    for hu, _, lung in _mid_lung_slices(array):
        rows = np.flatnonzero(lung.any(axis=1))
        quarter = (rows[-1] - rows[0]) / 4.0
        top, bottom = int(rows[0] + quarter), int(rows[-1] - quarter) + 1
        upper, lower = hu[:top][lung[:top]], hu[bottom:][lung[bottom:]]
        if upper.size >= _MIN_PIXELS and lower.size >= _MIN_PIXELS:
            gradients.append(float(np.median(lower)) - float(np.median(upper)))
    return float(np.median(gradients)) if gradients else None


def posterior_bone_share(array: np.ndarray) -> float | None:
    """The share of a chest slice's cortical bone (body pixels above ``_BONE_HU``) lying below the lungs' centre
    row, the median over the mid-lung slices (:func:`_mid_lung_slices`) with at least ``_MIN_BONE`` such pixels:
    above one half for a supine patient stored with the back at the bottom (the spine, the posterior ribs and the
    scapulae lie behind the lungs' centre), below it upside down; None when no slice qualifies."""
    shares = []
    for hu, body, lung in _mid_lung_slices(array):
        rows = np.nonzero(body & (hu > _BONE_HU))[0]
        if rows.size >= _MIN_BONE:
            shares.append(float((rows > ndimage.center_of_mass(lung)[0]).mean()))
    return float(np.median(shares)) if shares else None


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
