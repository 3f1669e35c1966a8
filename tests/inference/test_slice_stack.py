"""A volume that is a stack of unrelated slices (one slice each of many patients, as public sets of CT slices ship
them) is segmented and measured slice by slice, as if each slice were analysed alone; a scan is not."""
from __future__ import annotations

import numpy as np
import pytest

from inference.bundle import load_bundle
from inference.io import Volume, load_study
from inference.lungs import segment_lungs
from inference.pipeline import analyze
from inference.slice_stack import unrelated_slices
from training.phantom import generate_study


def _mid_slices(seeds: range, label: str = "COVID") -> np.ndarray:
    """The middle slice of a phantom study per seed (different patients), stacked."""
    return np.stack([generate_study(seed, label, size=96, n_slices=12).hu[6].astype(np.float32) for seed in seeds])


def test_a_stack_of_unrelated_slices_is_told_from_a_scan() -> None:
    scan = generate_study(3, "COVID", size=96, n_slices=12).hu.astype(np.float32)
    assert not unrelated_slices(scan) and not unrelated_slices(scan[:1])
    assert unrelated_slices(_mid_slices(range(20, 28)))


def test_real_scans_are_scans_and_their_slices_mixed_are_a_stack(shared_data) -> None:
    scans = [load_study(path).array for path in sorted((shared_data / "real-ct" / "ricord-slabs").glob("covid-*/p*"))]
    assert len(scans) == 8 and not any(unrelated_slices(a) for a in scans)
    assert unrelated_slices(np.stack([a[5] for a in scans]))


def test_a_stack_is_analysed_as_its_slices_alone() -> None:
    stack = _mid_slices(range(30, 36))
    bundle = load_bundle("default", device="cpu")
    with pytest.warns(UserWarning, match="6 slices are unrelated images"):
        together = analyze(Volume(array=stack.copy(), kind="nifti", is_hu=True, spacing_mm=(5.0, 2.5, 2.5)),
                           bundle, saliency="none")
    for k in range(len(stack)):
        alone = analyze(Volume(array=stack[k:k + 1].copy(), kind="nifti", is_hu=True, spacing_mm=(5.0, 2.5, 2.5)),
                        bundle, saliency="none")
        np.testing.assert_array_equal(together.lung_mask[k], alone.lung_mask[0])
        np.testing.assert_array_equal(together.opacity_mask[k], alone.opacity_mask[0])
    np.testing.assert_array_equal(segment_lungs(stack), np.stack([segment_lungs(s) for s in stack]))
