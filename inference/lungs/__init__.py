"""Lung segmentation: one entry point, two methods and the rule that picks between them.

``classical`` needs no weights and runs in a second on CPU (see :mod:`inference.lungs.classical`), but it is a
threshold at -320 HU: dense lesions touching the pleura (consolidation, much CAP) fall outside its mask, so their
area is lost to the severity figure and the lung outline cuts through them. ``unet`` is the multi-view U-Net in
:mod:`inference.lungs.multiview_unet`, imported only when asked for, which keeps them (lesion voxels inside the mask
on held-out real backgrounds with simulated lesions: 0.88 against 0.45 for ``classical``).

``auto`` (the default) runs both on a HU volume and fuses them (:mod:`inference.lungs.fusion`): the classical
mask where the lung is aerated (a threshold draws that border to the voxel) plus the U-Net's dense lung that the
threshold misses (consolidation at the pleura), so the mask keeps the disease and stays precise. The U-Net (trained
on real backgrounds and phantoms with simulated lesions inside the truth masks) is trusted only when its mask holds
at least ``AUTO_MIN_COVERAGE`` of the classical one: a U-Net mask that misses much of the aerated lung has failed
on an unfamiliar scan, and the classical mask is used alone. The U-Net runs only on the slab of slices where the
classical method finds lung (:func:`unet_on_lung_slab`): it was trained on such slabs, and on a whole scan it
stretched the lungs into the abdomen (spleen, kidneys, bowel of LIDC-IDRI-0001). Images without HU (8-bit slices)
get the same fusion on grey levels (:func:`inference.lungs.fusion.segment_grey`); without the U-Net's weights both get ``classical``.
Figures: ``bench/lungs.py`` and ``models/lungs-unet/MODEL_CARD.md``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..io import Volume
from ..slice_stack import unrelated_slices
from .classical import segment_hu, segment_image, segment_work, upsample_mask
from .fusion import AERATED_FLOOR_HU, fuse_masks, segment_grey

__all__ = ["METHODS", "DEFAULT_METHOD", "segment_lungs", "choose_mask", "cranial_is_last", "unet_on_lung_slab"]

METHODS = ("auto", "classical", "unet")
DEFAULT_METHOD = "auto"
#: ``auto``: the fraction of the classical mask the U-Net's must hold to be trusted.
AUTO_MIN_COVERAGE = 0.8
#: ``auto``: the U-Net probability above which its dense lung is added to the classical mask (bench/lungs.py).
AUTO_ADD_LEVEL = 0.5
#: ``auto``: the U-Net probability above which the fused mask's holes are filled (the heart enclosed by lung and
#: an anterior rim of added tissue is not; a lesion's air bronchograms are).
AUTO_HOLE_LEVEL = 0.2
#: The U-Net's slab: slices whose classical lung area is at least this fraction of the largest, as the training
#: backgrounds are cut (``training.simulate.backgrounds.load_background``).
SLAB_MIN_AREA = 0.05


def cranial_is_last(volume: Volume) -> bool:
    """Whether the last slice is the head end: patient Z (superior is +Z in DICOM LPS) grows along the array."""
    positions = [p for p in (volume.image_position_patient[0], volume.image_position_patient[-1]) if p is not None]
    if len(positions) == 2 and positions[0][2] != positions[1][2]:
        return positions[1][2] > positions[0][2]
    return True


def choose_mask(hu: np.ndarray, classical: np.ndarray, unet_probability: np.ndarray,
                pixel_mm: float | None = None, cranial_last: bool = True) -> tuple[np.ndarray, str]:
    """``auto``'s choice: (mask, method) - the fusion of both when the U-Net's mask (probability > 0.5) holds
    ``AUTO_MIN_COVERAGE`` of the classical one, else the classical mask. The fusion adds only the U-Net's
    confident lung (probability > ``AUTO_ADD_LEVEL``): at the lung bases and the heart, its coarse border takes in
    the dome of the liver or the spleen at lower probability."""
    reference = int(classical.sum())
    coverage = float((classical & (unet_probability > 0.5)).sum()) / reference if reference else 0.0
    if reference and coverage >= AUTO_MIN_COVERAGE:
        return fuse_masks(hu, classical, unet_probability > AUTO_ADD_LEVEL, pixel_mm,
                          support=unet_probability > AUTO_HOLE_LEVEL, cranial_last=cranial_last,
                          aerated_floor_hu=AERATED_FLOOR_HU), "fusion"
    return classical, "classical"


def unet_on_lung_slab(hu: np.ndarray, classical: np.ndarray) -> np.ndarray:
    """The U-Net's lung probability of a (z, y, x) HU volume, computed on the slab of slices where the classical
    mask has at least ``SLAB_MIN_AREA`` of its largest lung area and 0 outside it (all of it when there is no lung).

    Why: the U-Net resamples its input to a fixed cube and was trained on slabs cut that way, which the lungs fill
    from end to end; given a scan down to the pelvis, it drew lung over the abdomen."""
    from .multiview_unet import probability

    area = classical.reshape(classical.shape[0], -1).sum(axis=1)
    if not area.any():
        return probability(hu)
    rows = np.flatnonzero(area >= SLAB_MIN_AREA * area.max())
    out = np.zeros(hu.shape, dtype=np.float32)
    out[rows[0]:rows[-1] + 1] = probability(hu[rows[0]:rows[-1] + 1])
    return out


def segment_lungs(volume: Volume | np.ndarray, method: str = DEFAULT_METHOD, **kw: Any) -> np.ndarray:
    """Bool lung mask shaped like the input: a Volume's array, or a bare HU array (2D in, 2D out).

    Non-HU volumes (8-bit images) are segmented per slice from their grey levels (``classical``: Otsu alone;
    otherwise the grey-level fusion), and so is a HU volume whose slices are unrelated images
    (``inference.slice_stack``). Extra keywords go to the method (to the classical one for ``auto``).
    """
    if method not in METHODS:
        raise ValueError(f"unknown lung segmentation method {method!r}; choose from {METHODS}")
    if isinstance(volume, Volume):
        array, is_hu = volume.array, volume.is_hu
        if method != "unet" and is_hu:
            kw.setdefault("spacing_mm", volume.spacing_mm)
            kw.setdefault("cranial_last", cranial_is_last(volume))
    else:
        array, is_hu = np.asarray(volume), True
    if is_hu and array.ndim == 3 and unrelated_slices(array):  # one slice each of many patients: each on its own
        return np.stack([segment_lungs(np.asarray(array[k], dtype=np.float32), method, **kw)
                         for k in range(array.shape[0])])
    if method == "classical":
        return segment_hu(array, **kw) if is_hu else segment_image(array)
    from .multiview_unet import DEFAULT_DIR, probability, segment  # torch only when a U-Net is asked for

    if not (DEFAULT_DIR / "weights.pt").is_file() and method == "auto":
        return segment_hu(array, **kw) if is_hu else segment_image(array)
    if not is_hu:
        return segment_grey(array)
    if method == "unet":
        return np.asarray(segment(array, **kw), dtype=bool)
    spacing = kw.get("spacing_mm")
    if array.ndim == 2:
        hu = np.asarray(array, dtype=np.float32)
        return choose_mask(hu, segment_hu(hu, **kw), probability(hu), float(spacing[1]) if spacing else None)[0]
    # the fusion runs at the classical method's working matrix (its mask is exact there), a quarter of the voxels
    # of a 512 x 512 study; the U-Net sees the same cube either way
    work, classical, factor = segment_work(array, **kw)
    fused = choose_mask(work, classical, unet_on_lung_slab(work, classical),
                        float(spacing[1]) * factor if spacing else None, kw.get("cranial_last", True))[0]
    return upsample_mask(fused, factor, array.shape)
