"""The ``auto`` lung mask: the classical mask, plus the dense lung the U-Net finds and the threshold misses.

Why a fusion: the classical threshold (-320 HU) draws the aerated lung's border to the voxel, but consolidation is
as dense as the chest wall and falls outside it; the multi-view U-Net keeps consolidation (it is trained on lungs
with lesions inside their masks) but runs on a 48 x 64 x 64 cube, so its border is a few millimetres off. The fused
mask takes the classical mask where the lung is aerated and adds the U-Net's mask only where the classical one
cannot see: voxels of the U-Net's mask that are dense (above the classical threshold) but not bone, opened in-plane
by ``open_mm`` (then grown back as far through dense tissue) and connected, in the same slice, to the classical
lung. The opening is what keeps the border precise: where the lung is healthy, the U-Net's border error leaves a
thin rim of chest wall outside the classical mask, which the opening removes, while a lesion is a thick region and
survives it whole, up to the pleura (an erosion of the U-Net's mask would cut the lesion's pleural edge too). Holes
are then filled per slice, as the classical method does, but only where the U-Net sees lung at a lower level
(``support``).

Why in-plane connection and limited hole filling: where the U-Net errs, it errs at the diaphragm and the mediastinum
(on LIDC-IDRI-0001 it called spleen, kidney, bowel and stomach lung). Connected in 3-D, such dense tissue joined the
lung bases through the diaphragm and the stomach wall then closed round its gas, which the hole filling made lung;
a dense rim along the anterior junction closed a ring round the heart, whose hole was filled the same way. Tissue
that touches aerated lung in its own slice (a consolidation at the pleura does) stays; the heart and the stomach's
gas, which the U-Net does not call lung, are no longer holes to fill. One exception, upwards only: a consolidated
apex or upper lobe leaves slices where that lung holds no aerated voxel at all, and the in-slice rule dropped the
whole lesion (a white-out of the left upper lobe, 20,000 lesion voxels of a held-out study). Such a component is
kept when at least ``APEX_OVERLAP`` of it lies over the kept lung of the slice below it (slice by slice, towards
the head) and it is the size of a consolidated segment or lobe (``APEX_MIN_AREA_MM2``): nothing but the lungs' own
apices lies above the lungs, whereas the same rule downwards took in the spleen, the colon and the posterior
costophrenic tissue of three of the five real healthy scans. The size floor is there because on short real slabs the
rule otherwise followed the U-Net's small errors up from slice to slice (a loop inside the heart and a patch of
anterior chest wall of the RICORD CT angiogram, 330-1,310 mm^2 each), where the one lobar white-out of the held-out
studies was 1,950-8,800 mm^2 per slice; the floor sits between the two, so it was chosen on these few cases
(``models/lungs-unet/MODEL_CARD.md``). (:func:`inference.lungs.unet_on_lung_slab`
keeps the U-Net off the abdomen below the lungs altogether.)

The classical mask also leaves out lung that is not dense: it keeps only the largest air-like components, so ground
glass cut off from them by consolidation or by the -320 HU level (a left upper lobe of the RICORD COVID-19 slab
patient_2, 18,000 voxels; in a held-out phantom study with diffuse ground glass, a quarter of the lesion) was
outside both masks, since the fusion added dense voxels only. ``auto`` now also adds the U-Net's lung from
``AERATED_FLOOR_HU`` (-800) up to the threshold, opened on its own (opened together with the dense voxels, the
thicker union let a rim of abdominal fat and bowel through on LIDC-IDRI-0001) and kept by the same in-slice
connection; the floor leaves airway lumen and gas out (at -950, the classical mask's airway level, a main bronchus
of LIDC-IDRI-0003 came back). Real scans: no voxel changes on the 5 whole scans and 8 slabs but on three (RICORD
positive patient_2 +18,180 voxels of ground glass, patient_1 +292, Lung_Dx-A0002 +264).

8-bit images (UCSD-style slices, already windowed, no HU) get the same fusion on grey levels
(:func:`segment_grey`): the grey levels are read back as HU through the lung window (W1500/L-600, what such
slices mostly show; soft tissue and consolidation saturate at the top), the U-Net runs on that single slice (axial
networks only), and its mask adds the bright lung that the Otsu threshold of ``segment_image`` drops.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from .classical import (_IN_PLANE, bounding_box, dilate_in_plane, drop_domes, erode_in_plane, fill_and_close,
                        members, segment_image)

__all__ = ["AERATED_FLOOR_HU", "fuse_masks", "segment_grey", "grey_to_hu"]

#: The window grey images are assumed to show (width, level): the lung window.
GREY_WINDOW = (1500.0, -600.0)
#: Assumed field of view of a grey image (mm across its smaller side), for the U-Net erosion in pixels.
GREY_FOV_MM = 350.0

#: The lowest density of the U-Net's lung that the fusion adds where the classical mask dropped it (lung-density
#: ground glass it cut off; not airway lumen or bowel gas, which are darker).
AERATED_FLOOR_HU = -800.0
#: The share of a component without aerated lung in its slice that must lie over the kept lung of the slice below.
APEX_OVERLAP = 0.5
#: ... and the smallest such component, in mm^2 of its slice (a consolidated segment, not a stray patch).
APEX_MIN_AREA_MM2 = 1500.0


def fuse_masks(hu: np.ndarray, classical: np.ndarray, unet: np.ndarray,
               pixel_mm: float | None = None, open_mm: float = 3.0, threshold_hu: float = -320.0,
               bone_hu: float = 250.0, support: np.ndarray | None = None, cranial_last: bool = True,
               aerated_floor_hu: float | None = None) -> np.ndarray:
    """The classical mask united with the U-Net's dense lung (see the module docstring); (z, y, x) or (y, x).

    ``support``: where holes of the fused mask may be filled besides the classical mask's own holes (the U-Net's
    lung at a lower probability level); None fills every hole. ``cranial_last``: the last slice is the head end
    (which way a consolidated apex is followed up). ``aerated_floor_hu``: also add the U-Net's lung between this
    level and ``threshold_hu`` that the classical mask left out (opened on its own, then kept where it touches the
    lung in its slice, like the dense additions); None adds dense lung only."""
    if hu.ndim == 2:
        return fuse_masks(hu[None], classical[None], unet[None], pixel_mm, open_mm, threshold_hu, bone_hu,
                          None if support is None else support[None], aerated_floor_hu=aerated_floor_hu)[0]
    tissue = hu >= threshold_hu  # in place from here on: these masks are the size of the study
    tissue &= hu < bone_hu
    tissue &= ~classical
    dense = unet & tissue
    steps = int(round(open_mm / (pixel_mm or 1.0)))
    _open_in_plane(dense, steps, tissue)
    del tissue
    low = None
    if aerated_floor_hu is not None:  # the U-Net's lung of lung density that the classical mask dropped
        low = hu >= aerated_floor_hu
        low &= hu < threshold_hu
        low &= unet
        low &= ~classical
        _open_in_plane(low, steps)
    if not dense.any() and (low is None or not low.any()):
        return classical
    lung = dense
    lung |= classical
    if low is not None:
        lung |= low
    box = bounding_box(lung, 0)
    labels, n = ndimage.label(lung[box], structure=_IN_PLANE)
    kept = members(labels, labels[classical[box]], n)
    lung[box] = _up_from_kept(labels, n, kept, cranial_last, APEX_MIN_AREA_MM2 / (pixel_mm or 1.0) ** 2)
    del labels
    fused = fill_and_close(lung)
    del lung, dense, low  # study-sized masks: not alive beside the dome check's temporaries
    if support is not None:
        fillable = fill_and_close(classical)
        fillable |= support
        fused &= fillable
        del fillable
    return drop_domes(fused, hu, threshold_hu, cranial_last)  # the U-Net's lung may hold a dome the classical drops


def _open_in_plane(mask: np.ndarray, steps: int, within: np.ndarray | None = None) -> None:
    """``mask`` (z, y, x) opened in-plane by ``steps`` pixels, then grown back as far through ``within`` (the mask
    itself when None): a lesion's corners and its pleural edge (which the U-Net's coarse border may cut) return, a
    removed thin rim does not. In place; the filters run on the bounding box of what they change, grown by their
    reach (``bounding_box``)."""
    box = bounding_box(mask, steps + 1)
    if steps > 0 and box is not None:
        limit = mask[box].copy() if within is None else within[box]
        opened = dilate_in_plane(erode_in_plane(mask[box], steps), steps)
        mask.fill(False)
        mask[box] = dilate_in_plane(opened, steps, within=limit)


def _up_from_kept(labels: np.ndarray, n: int, kept: np.ndarray, cranial_last: bool, min_pixels: float) -> np.ndarray:
    """``kept`` (z, y, x) with, slice by slice towards the head, every in-plane component of ``labels`` of at least
    ``min_pixels`` that lies at least ``APEX_OVERLAP`` over the kept lung of the slice below it (a consolidated apex;
    see the module docstring). In place; the labels are in-plane, so each is one slice's."""
    order = range(1, len(kept)) if cranial_last else range(len(kept) - 2, -1, -1)
    step = 1 if cranial_last else -1
    for z in order:
        here = labels[z]
        candidates = here.astype(bool) & ~kept[z]
        if not candidates.any():
            continue
        area = np.bincount(here[candidates], minlength=n + 1)
        over = np.bincount(here[candidates & kept[z - step]], minlength=n + 1)
        taken = np.flatnonzero((area >= max(min_pixels, 1)) & (over >= APEX_OVERLAP * area))
        if taken.size:
            kept[z] |= members(here, taken, n)
    return kept


def grey_to_hu(image: np.ndarray, top: float = 255.0) -> np.ndarray:
    """Grey levels (0..``top``) back to HU through ``GREY_WINDOW``."""
    width, level = GREY_WINDOW
    return np.asarray(image, dtype=np.float32) / np.float32(top) * np.float32(width) + np.float32(level - width / 2)


def segment_grey(image: np.ndarray, open_mm: float = 3.0) -> np.ndarray:
    """Lung mask of windowed grey slices ((y, x) or a stack of independent (z, y, x) slices): the Otsu mask of
    ``segment_image`` united with the U-Net's bright lung, fused as :func:`fuse_masks` does (bone is not told apart:
    a lung window saturates it with the soft tissue)."""
    from .multiview_unet import segment

    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 3:
        return np.stack([segment_grey(s, open_mm) for s in image])
    classical = segment_image(image)
    if not classical.any():
        return classical
    top = 1.0 if float(image.max()) <= 1.0 else 255.0
    hu = grey_to_hu(image, top)
    dark_below = float(grey_to_hu(np.float32(threshold_otsu(image)), top))
    return fuse_masks(hu, classical, np.asarray(segment(hu), dtype=bool), GREY_FOV_MM / min(image.shape),
                      open_mm=open_mm, threshold_hu=dark_below, bone_hu=np.inf)
