"""Lung segmentation: one entry point, two methods.

``classical`` (default) needs no weights and runs in seconds on CPU (see :mod:`inference.lungs.classical`);
``unet`` is the multi-view U-Net in :mod:`inference.lungs.multiview_unet`, imported only when asked for so the
classical path never loads its weights.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..io import Volume
from .classical import segment_hu, segment_image

__all__ = ["segment_lungs", "cranial_is_last"]

METHODS = ("classical", "unet")


def cranial_is_last(volume: Volume) -> bool:
    """Whether the last slice is the head end: patient Z (superior is +Z in DICOM LPS) grows along the array."""
    positions = [p for p in (volume.image_position_patient[0], volume.image_position_patient[-1]) if p is not None]
    if len(positions) == 2 and positions[0][2] != positions[1][2]:
        return positions[1][2] > positions[0][2]
    return True


def segment_lungs(volume: Volume | np.ndarray, method: str = "classical", **kw: Any) -> np.ndarray:
    """Bool lung mask shaped like the input: a Volume's array, or a bare HU array (2D in, 2D out).

    Non-HU volumes (8-bit images) are segmented per slice from their grey levels. Extra keywords go to the method.
    """
    if method not in METHODS:
        raise ValueError(f"unknown lung segmentation method {method!r}; choose from {METHODS}")
    if isinstance(volume, Volume):
        array, is_hu = volume.array, volume.is_hu
        if method == "classical" and is_hu:
            kw.setdefault("spacing_mm", volume.spacing_mm)
            kw.setdefault("cranial_last", cranial_is_last(volume))
    else:
        array, is_hu = np.asarray(volume), True
    if not is_hu:
        return segment_image(array)
    if method == "unet":
        from .multiview_unet import segment

        return np.asarray(segment(array, **kw), dtype=bool)
    return segment_hu(array, **kw)
