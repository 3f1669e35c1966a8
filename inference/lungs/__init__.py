"""Lung segmentation: one entry point, two methods and the rule that picks between them.

``classical`` needs no weights and runs in a second on CPU (see :mod:`inference.lungs.classical`), but it is a
threshold at -320 HU: dense lesions touching the pleura (consolidation, much CAP) fall outside its mask, so their
area is lost to the severity figure and the lung outline cuts through them. ``unet`` is the multi-view U-Net in
:mod:`inference.lungs.multiview_unet`, imported only when asked for, which keeps them (lesion voxels inside the mask
on CAP phantoms: about 0.8-0.97 against 0.02-0.09 for ``classical``).

``auto`` (the default) runs both on a HU volume and keeps the U-Net's mask when it holds at least
``AUTO_MIN_COVERAGE`` of the classical one: the aerated lung is the part a threshold gets right, so a U-Net mask
that misses much of it has failed on an unfamiliar scan (it was trained on phantoms; on the two real TCIA chest
series it holds 93-95 % of the classical mask), and the classical mask is used instead. Images without HU and
volumes without the U-Net's weights get ``classical``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..io import Volume
from .classical import segment_hu, segment_image

__all__ = ["METHODS", "DEFAULT_METHOD", "segment_lungs", "choose_mask", "cranial_is_last"]

METHODS = ("auto", "classical", "unet")
DEFAULT_METHOD = "auto"
#: ``auto``: the fraction of the classical mask the U-Net's must hold to be trusted.
AUTO_MIN_COVERAGE = 0.8


def cranial_is_last(volume: Volume) -> bool:
    """Whether the last slice is the head end: patient Z (superior is +Z in DICOM LPS) grows along the array."""
    positions = [p for p in (volume.image_position_patient[0], volume.image_position_patient[-1]) if p is not None]
    if len(positions) == 2 and positions[0][2] != positions[1][2]:
        return positions[1][2] > positions[0][2]
    return True


def choose_mask(classical: np.ndarray, unet: np.ndarray) -> tuple[np.ndarray, str]:
    """``auto``'s choice: (mask, method) - the U-Net's when it holds ``AUTO_MIN_COVERAGE`` of the classical mask."""
    reference = int(classical.sum())
    coverage = float((classical & unet).sum()) / reference if reference else 0.0
    return (unet, "unet") if reference and coverage >= AUTO_MIN_COVERAGE else (classical, "classical")


def segment_lungs(volume: Volume | np.ndarray, method: str = DEFAULT_METHOD, **kw: Any) -> np.ndarray:
    """Bool lung mask shaped like the input: a Volume's array, or a bare HU array (2D in, 2D out).

    Non-HU volumes (8-bit images) are segmented per slice from their grey levels. Extra keywords go to the method
    (to the classical one for ``auto``).
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
    if not is_hu:
        return segment_image(array)
    if method == "classical":
        return segment_hu(array, **kw)
    from .multiview_unet import DEFAULT_DIR, segment

    if method == "unet":
        return np.asarray(segment(array, **kw), dtype=bool)
    classical = segment_hu(array, **kw)
    if not (DEFAULT_DIR / "weights.pt").is_file():
        return classical
    return choose_mask(classical, np.asarray(segment(array), dtype=bool))[0]
