"""Classical lung segmentation against the phantom's ground truth, and its 2D (no HU) path."""
from __future__ import annotations

import numpy as np
import pytest

from inference.io import Volume
from inference.lungs import segment_lungs
from inference.normalize import fixed_window


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


@pytest.mark.parametrize("seed,label,profile", [(3, "COVID", "thin-sharp"), (7, "CAP", "low-dose"),
                                                (11, "NP", "thick-smooth")])
def test_dice_against_the_phantom(seed: int, label: str, profile: str) -> None:
    from training.phantom import generate_study

    study = generate_study(seed, label, profile=profile, size=128, n_slices=32)
    volume = Volume(array=study.hu.astype(np.float32), kind="dicom-series", is_hu=True, spacing_mm=study.spacing_mm)
    mask = segment_lungs(volume)
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
