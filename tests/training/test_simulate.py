"""The lesion simulator and scanner randomisation: disease where the literature puts it, truth masks that match."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from training.simulate.backgrounds import phantom_background, simulate, simulated_studies
from training.simulate.lesions import AIRWAY_HU, cap, covid, insert_lesions, np_confounders
from training.simulate.scanner import PADDING_VALUES, ScanSample, randomize


@pytest.fixture(scope="module")
def bg():
    return phantom_background(31, size=128, n_slices=48)


def _pleural_mm(lung: np.ndarray, spacing) -> np.ndarray:
    return np.stack([ndimage.distance_transform_edt(s, sampling=spacing[1:]) for s in lung])


def test_covid_is_peripheral_bilateral_and_keeps_vessels(bg) -> None:
    rng = np.random.default_rng(3)
    out = covid(rng, bg.hu, bg.lung, bg.spacing_mm, extent=0.15)
    assert out.lesion.any() and not (out.lesion & ~bg.lung).any(), "lesions only inside the lungs"
    assert 0.05 < out.lesion.sum() / bg.lung.sum() < 0.3
    dist = _pleural_mm(bg.lung, bg.spacing_mm)
    assert dist[out.lesion].mean() < 0.7 * dist[bg.lung].mean(), "COVID-19 GGO is subpleural-predominant"
    cols = np.flatnonzero(bg.lung.any(axis=(0, 1)))
    mid = (cols[0] + cols[-1]) / 2
    xs = np.nonzero(out.lesion)[2]
    assert (xs < mid).mean() > 0.15 and (xs > mid).mean() > 0.15, "bilateral"
    ggo_only = out.lesion & ~out.consolidation
    # Ground glass raises attenuation on top of the parenchyma: nothing under it (vessels included) gets darker,
    # except the thin crazy-paving lines, which only add.
    assert (out.hu[ggo_only] >= bg.hu[ggo_only] - 1e-3).all()
    assert np.median(out.hu[ggo_only]) > np.median(bg.hu[bg.lung]) + 100


def test_cap_consolidation_is_dense_mostly_one_lung_and_keeps_the_bronchi(bg) -> None:
    hu = bg.hu.copy()
    out = None
    for seed in range(20):  # draw until the lobar pattern (not bronchopneumonia) comes up, as a user of cap() would
        out = cap(np.random.default_rng(seed), hu, bg.lung, bg.spacing_mm, extent=0.2)
        if out.findings == ["consolidation"]:
            break
    assert out is not None and out.findings == ["consolidation"]
    assert not (out.lesion & ~bg.lung).any()
    dense = out.consolidation & (bg.hu >= AIRWAY_HU)
    assert np.median(out.hu[dense]) > -150, "consolidation density"
    cols = np.flatnonzero(bg.lung.any(axis=(0, 1)))
    xs = np.nonzero(out.lesion)[2]
    side = (xs > (cols[0] + cols[-1]) / 2).mean()
    assert side > 0.75 or side < 0.25, "lobar pneumonia sits mostly in one lung"


def test_np_has_no_lesion_truth_even_with_confounders(bg) -> None:
    rng = np.random.default_rng(0)
    out = np_confounders(rng, bg.hu, bg.lung, bg.spacing_mm)
    assert not out.lesion.any() and not out.consolidation.any()
    plain = insert_lesions(np.random.default_rng(1), bg.hu, bg.lung, bg.spacing_mm, "NP", confounder_p=0.0)
    assert np.array_equal(plain.hu, bg.hu.astype(np.float32)) and plain.findings == []
    with pytest.raises(ValueError, match="NP, CAP or COVID"):
        insert_lesions(rng, bg.hu, bg.lung, bg.spacing_mm, "flu")


def test_scanner_keeps_masks_aligned_and_changes_the_scan(bg) -> None:
    thin = (1.25, *bg.spacing_mm[1:])  # as a thin-slice scan, so thicker slabs can be made from it
    lesion = covid(np.random.default_rng(5), bg.hu, bg.lung, thin, extent=0.1)
    sample = ScanSample(lesion.hu, bg.lung, lesion.lesion, thin)
    seen_padding, thick = set(), False
    for seed in range(12):
        out = randomize(np.random.default_rng(seed), sample)
        assert out.hu.shape == out.lung.shape == out.lesion.shape
        assert out.lung.dtype == bool and out.lesion.dtype == bool
        assert not (out.lesion & ~out.lung).any(), "lesion truth stays inside the lung truth"
        k = round(out.spacing_mm[0] / thin[0])
        assert k >= 1 and out.hu.shape[0] == bg.hu.shape[0] // k, "slabs of k thin slices, spacing k times thinner's"
        thick |= k > 1
        corner = float(out.hu[0, 0, 0])
        if corner in PADDING_VALUES:
            seen_padding.add(corner)
        assert not np.allclose(out.hu, sample.hu[: out.hu.shape[0]]), "noise and calibration change every scan"
    assert thick and seen_padding, "thick slabs and vendor padding values both occur"


def test_every_background_appears_in_every_class() -> None:
    records = list(simulated_studies(["phantom:7", "phantom:8"], per_class=1, seed=2))
    by_group: dict[str, set[str]] = {}
    for r in records:
        by_group.setdefault(r.group, set()).add(r.label)
        assert r.source == "phantom" and r.lesion_mask is not None
        assert (r.lesion_mask.any()) == (r.label != "NP")
    assert all(labels == {"NP", "CAP", "COVID"} for labels in by_group.values()) and len(by_group) == 2


def test_real_background_simulation(shared_data) -> None:
    from training.simulate.backgrounds import background

    bg = background("Lung_Dx-A0002")
    sample, findings = simulate(np.random.default_rng(11), bg, "COVID", extent=0.2)
    assert "ggo" in findings and sample.lesion.any()
    assert not (sample.lesion & ~sample.lung).any()
    fraction = sample.lesion.sum() / sample.lung.sum()
    assert 0.08 < fraction < 0.35


def test_blocks_cover_apex_and_base_as_often_as_the_middle(bg) -> None:
    """A block's start drawn only where the block fits inside the lungs covered the first and last lung slices
    about once in (lung length - block length) draws: models trained on such blocks rarely saw the apex or the
    diaphragm dome and called them pneumonia on whole real scans."""
    from training.simulate.backgrounds import _block

    rng = np.random.default_rng(5)
    area = bg.lung.reshape(bg.lung.shape[0], -1).sum(axis=1)
    lungs = np.flatnonzero(area >= 0.25 * area.max())
    n = int(round(30.0 / bg.spacing_mm[0]))
    assert 3 <= n < lungs.size / 2, "the check needs blocks much shorter than the lungs"
    cover = np.zeros(bg.lung.shape[0])
    for _ in range(4000):
        block = _block(rng, bg, 30.0)
        assert block.stop - block.start == n and 0 <= block.start and block.stop <= bg.lung.shape[0]
        cover[block] += 1
    ends, middle = cover[[lungs[0], lungs[-1]]], cover[lungs[lungs.size // 2]]
    assert ends.min() > 0.7 * middle, (ends, middle)
    assert _block(rng, bg, None) == slice(0, bg.lung.shape[0])


def test_simulated_studies_mix_whole_scans_and_blocks() -> None:
    """Part of the studies are the whole background (as the pipeline sees a chest CT), the rest 70 mm slabs; the
    scanner may resample the slices, so the comparison is in millimetres."""
    whole = phantom_background(7)
    whole_mm = whole.hu.shape[0] * whole.spacing_mm[0]
    extents = [r.array.shape[0] * r.spacing_mm[0] for r in simulated_studies(["phantom:7"], per_class=6, seed=3)]
    n_whole = sum(e >= 0.9 * whole_mm for e in extents)
    assert 0 < n_whole < len(extents), (extents, whole_mm)
