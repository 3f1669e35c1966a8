"""Classical lung segmentation against the phantom's ground truth, and its 2D (no HU) path."""
from __future__ import annotations

import numpy as np
import pytest

from inference.io import Volume
from inference.lungs import AUTO_MIN_COVERAGE, choose_mask, segment_lungs
from inference.normalize import fixed_window


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.parametrize("seed,label,profile", [(3, "COVID", "thin-sharp"), (7, "CAP", "low-dose"),
                                                (11, "NP", "thick-smooth")])
def test_dice_against_the_phantom(seed: int, label: str, profile: str) -> None:
    from training.phantom import generate_study

    study = generate_study(seed, label, profile=profile, size=128, n_slices=32)
    volume = Volume(array=study.hu.astype(np.float32), kind="dicom-series", is_hu=True, spacing_mm=study.spacing_mm)
    mask = segment_lungs(volume, method="classical")
    assert mask.shape == study.hu.shape and mask.dtype == bool
    assert dice(mask, study.lung_mask) >= 0.95
    # the trachea (central air above the lungs) is not lung
    top = max(np.flatnonzero(study.lung_mask.any(axis=(1, 2))))
    assert not mask[top + 1:].any()


def test_2d_hu_array_in_2d_mask_out(phantom_covid) -> None:
    k = int(np.argmax(phantom_covid.lung_mask.sum(axis=(1, 2))))
    mask = segment_lungs(phantom_covid.hu[k].astype(np.float32))
    assert mask.shape == phantom_covid.hu[k].shape
    assert dice(mask, phantom_covid.lung_mask[k]) >= 0.9


def test_windowed_image_without_hu(phantom_covid) -> None:
    """A PNG-like slice (lung window, 0..255) goes through Otsu and the same component logic."""
    k = int(np.argmax(phantom_covid.lung_mask.sum(axis=(1, 2))))
    grey = np.round(fixed_window(phantom_covid.hu[k], 1500, -600) * 255)
    volume = Volume(array=grey[None].astype(np.float32), kind="image", is_hu=False)
    mask = segment_lungs(volume)
    assert mask.shape == (1, *grey.shape)
    assert dice(mask[0], phantom_covid.lung_mask[k]) >= 0.9


def test_no_lungs_in_soft_tissue_and_gas_only() -> None:
    """An abdomen-like volume: body, a gas bubble (pure air) inside it, air outside: no lung."""
    hu = np.full((12, 96, 96), -1000.0, np.float32)
    yy, xx = np.mgrid[:96, :96]
    body = (yy - 48) ** 2 / 40 ** 2 + (xx - 48) ** 2 / 44 ** 2 < 1
    hu[:, body] = 40.0
    hu[:, (yy - 40) ** 2 + (xx - 55) ** 2 < 12 ** 2] = -1000.0
    mask = segment_lungs(hu, spacing_mm=(5.0, 2.0, 2.0))
    assert not mask.any()


def test_unknown_method_is_refused(phantom_covid) -> None:
    with pytest.raises(ValueError):
        segment_lungs(phantom_covid.hu, method="magic")


def test_auto_keeps_consolidation_that_the_threshold_loses() -> None:
    """A CAP phantom: the consolidation touches the pleura, above -320 HU, outside the classical mask; ``auto``
    (the default) takes the U-Net's mask, which holds it, and still matches the phantom's lungs."""
    from training.phantom import generate_study

    study = generate_study(21, "CAP", size=256, n_slices=40)
    volume = Volume(array=study.hu.astype(np.float32), kind="dicom-series", is_hu=True, spacing_mm=study.spacing_mm)
    lesion = study.lesion_mask

    def coverage(mask: np.ndarray) -> float:
        return float((mask & lesion).sum()) / float(lesion.sum())

    classical, auto = segment_lungs(volume, method="classical"), segment_lungs(volume)
    assert coverage(classical) < 0.2 and coverage(auto) > 0.7
    assert dice(auto, study.lung_mask) > dice(classical, study.lung_mask) and dice(auto, study.lung_mask) >= 0.95


def test_auto_trusts_the_unet_only_where_it_holds_the_aerated_lung() -> None:
    classical = np.zeros((4, 20, 20), dtype=bool)
    classical[:, 5:15, 5:15] = True
    bigger = classical.copy()
    bigger[:, 15:18, 5:15] = True  # the U-Net adds a lesion at the edge and holds all of the classical mask
    assert choose_mask(classical, bigger)[1] == "unet"
    missing = classical.copy()
    missing[:, 5:10] = False  # the U-Net lost half of the aerated lung: a failure on an unfamiliar scan
    assert (missing & classical).sum() / classical.sum() < AUTO_MIN_COVERAGE
    mask, method = choose_mask(classical, missing)
    assert method == "classical" and mask is classical
    assert choose_mask(np.zeros_like(classical), bigger)[1] == "classical"  # no lungs found: nothing to check against
