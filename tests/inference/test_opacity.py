"""Severity in HU: opacity and high opacity counted inside the lungs, vessels left out."""
from __future__ import annotations

import numpy as np

from inference.opacity import (CONSOLIDATION, GGO, aerated_baseline, opacity_labels, percentages,
                               through_plane_interior)


def _lungs(n: int = 3, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    hu = np.full((n, size, size), 40.0, dtype=np.float32)
    lung = np.zeros(hu.shape, dtype=bool)
    lung[:, 20:108, 10:60] = True  # image-left lung (patient right)
    lung[:, 20:108, 68:118] = True
    hu[lung] = -860.0 + rng.normal(0, 15, int(lung.sum()))
    return hu, lung


def test_ggo_and_consolidation_are_counted_vessels_are_not() -> None:
    hu, lung = _lungs()
    hu[:, 30:90, 80:110] = np.maximum(hu[:, 30:90, 80:110], -500.0)  # a ground-glass patch in the image-right lung
    hu[:, 60:80, 20:45] = 20.0  # a consolidation in the image-left lung
    for x in (15, 30, 50):  # thin vessels (2 px = 1.4 mm) in aerated lung
        hu[:, 25:100, x:x + 2] = 40.0
    labels = opacity_labels(hu, lung, pixel_mm=0.7)
    assert (labels[:, 35:85, 85:105] == GGO).mean() > 0.95
    assert (labels[:, 63:77, 23:42] == CONSOLIDATION).mean() > 0.95
    assert not labels[:, 25:55, 15:17].any() and not labels[:, 25:55, 50:52].any(), "thin vessels are not opacity"
    assert not labels[~lung].any(), "nothing outside the lungs"
    truth = (60 * 30 + 20 * 25) / (88 * 50 * 2) * 100
    pct = percentages(labels, lung)
    assert abs(pct["percent"] - truth) < 1.5
    assert pct["per_lung"]["left"] > pct["per_lung"]["right"] > 0, "GGO patch in the patient's left lung"
    assert 0 < pct["high_percent"] < pct["percent"]


def test_healthy_noisy_lung_has_almost_no_opacity_whatever_its_level() -> None:
    for shift in (-60.0, 0.0, 80.0):  # scanners place aerated lung between about -920 and -780 HU
        hu, lung = _lungs()
        hu[lung] += shift
        hu[lung] += np.random.default_rng(1).normal(0, 40, int(lung.sum())).astype(np.float32)
        assert abs(aerated_baseline(hu, lung) - (-860.0 + shift)) < 25
        assert percentages(opacity_labels(hu, lung), lung)["percent"] < 1.0


def test_2d_input_and_empty_lungs() -> None:
    hu, lung = _lungs(1)
    assert opacity_labels(hu[0], lung[0]).shape == hu[0].shape
    empty = np.zeros_like(lung)
    assert not opacity_labels(hu, empty).any()
    assert percentages(opacity_labels(hu, empty), empty) == {"percent": 0.0, "high_percent": 0.0,
                                                            "per_lung": {"left": 0.0, "right": 0.0}}


def test_widespread_ground_glass_does_not_become_the_baseline() -> None:
    """Ground glass over 60 % of the lungs is the histogram's mode; the baseline stays the aerated lung's level, so
    the ground glass is counted (with the overall mode as the baseline, almost nothing was)."""
    hu, lung = _lungs()
    ggo = lung & (np.arange(hu.shape[1]) < 73)[None, :, None]
    hu[ggo] = -600.0 + np.random.default_rng(2).normal(0, 15, int(ggo.sum()))
    assert abs(aerated_baseline(hu, lung) - (-860.0)) < 25
    assert abs(percentages(opacity_labels(hu, lung, pixel_mm=0.7), lung)["percent"] - 100 * 53 / 88) < 5


def test_a_3_5_mm_vessel_is_not_consolidation() -> None:
    """A 3.5 mm vessel (5 px at 0.7 mm) in aerated lung survived the former 3 mm opening and raised its
    surroundings enough to count; the 5 mm opening removes it. A consolidation, thicker, still counts."""
    hu, lung = _lungs()
    hu[:, 25:100, 25:30] = 40.0
    hu[:, 60:80, 80:105] = 20.0
    labels = opacity_labels(hu, lung, pixel_mm=0.7)
    assert not labels[:, 30:95, 25:30].any()
    assert (labels[:, 63:77, 83:102] == CONSOLIDATION).mean() > 0.95


def test_the_row_wise_opening_is_scipys_binary_opening_with_the_disk() -> None:
    """The vessel-removing opening runs as row runs with sliding counts: it must be the disk opening exactly,
    image borders (outside is background) and disks taller than the image included."""
    from scipy import ndimage

    from inference.opacity import _disk, _opening

    rng = np.random.default_rng(1)
    for trial in range(300):
        rows, cols = rng.integers(1, 60, 2)
        mask = ndimage.gaussian_filter(rng.normal(size=(rows, cols)), rng.uniform(0.5, 3)) > rng.uniform(-0.3, 0.3)
        if trial % 7 == 0:
            mask[:] = True
        disk = _disk(rng.uniform(0.5, 6))
        np.testing.assert_array_equal(_opening(mask, disk), ndimage.binary_opening(mask, structure=disk))


def test_the_lungs_through_plane_rim_is_not_counted() -> None:
    """Where the lung ends between thick slices (the diaphragm dome), a slice's edge pixels share their thickness
    with the tissue below and look like ground glass: in a study of 5 mm slices they are lung but not opacity; on
    thin slices, or alone (no neighbours known), a slice's own pixels all count. Labelling slice by slice with
    ``counted`` is labelling the volume."""
    hu, lung = _lungs(5)
    lung[2, 108:124, 10:60] = True  # slice 2 reaches further down than its neighbours: the rim
    hu[2, 108:124, 10:60] = -520.0  # partial volume with the tissue below
    hu[:, 40:70, 20:50] = -500.0  # ground glass inside the lung, through all slices
    labels = opacity_labels(hu, lung, pixel_mm=0.7, slice_mm=5.0)
    assert not labels[2, 110:122, 15:55].any(), "the through-plane rim is not opacity"
    thin = opacity_labels(hu, lung, pixel_mm=0.7, slice_mm=1.25)
    assert (thin[2, 110:122, 15:55] == GGO).mean() > 0.9
    np.testing.assert_array_equal(thin, opacity_labels(hu, lung, pixel_mm=0.7))  # spacing unknown: as thin
    assert (labels[1:4, 45:65, 25:45] == GGO).all()
    alone = opacity_labels(hu[2], lung[2], pixel_mm=0.7, baseline=aerated_baseline(hu, lung))
    assert (alone[110:122, 15:55] == GGO).mean() > 0.9
    rim = lung[2] & ~through_plane_interior(lung, 2, 5.0)
    assert rim[108:124, 10:60].all() and rim.sum() == 16 * 50
    per_slice = np.stack([opacity_labels(hu[z], lung[z], pixel_mm=0.7, baseline=aerated_baseline(hu, lung),
                                         counted=through_plane_interior(lung, z, 5.0)) for z in range(len(hu))])
    np.testing.assert_array_equal(per_slice, labels)
