"""The infection figure of a HU study: the opacity of the slices the classifier calls diseased, not a saliency area.

The shipped model on simulated studies it never saw (a phantom background with a freshly simulated lesion of known
extent): the figure follows its definition slice by slice, does not depend on which slices were explained, and
measures an extensive lesion instead of the few percent a thresholded saliency map covers.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.bundle import load_bundle
from inference.io import Volume
from inference.pipeline import analyze, positive_classes
from training.simulate.backgrounds import background, simulate


@pytest.fixture(scope="module")
def bundle():
    torch.set_num_threads(2)
    return load_bundle("default", device="cpu")


def _study(label: str, extent: float | None) -> tuple[Volume, float]:
    sample, _ = simulate(np.random.default_rng(20261206), background("phantom:977100"), label, extent=extent)
    volume = Volume(array=sample.hu.astype(np.float32), kind="nifti", is_hu=True, spacing_mm=sample.spacing_mm)
    return volume, 100.0 * sample.lesion.sum() / sample.lung.sum()


@pytest.fixture(scope="module")
def cap_study() -> tuple[Volume, float]:
    """A CAP study with a third of the lung consolidated, on a phantom patient the model never trained on."""
    return _study("CAP", 0.35)


def test_infection_is_the_opacity_of_the_diseased_slices(bundle, cap_study) -> None:
    volume, truth = cap_study
    explained = analyze(volume, bundle, saliency="positive")
    positive = positive_classes(bundle.classes)
    verdicts = []
    for result in (explained, analyze(_study("NP", None)[0], bundle, saliency="none")):
        for s in result.slices:
            sick = max(s.probabilities, key=s.probabilities.get) in positive
            assert s.infected_area_px == (s.opacity_px if sick else 0)
            verdicts.append(sick)
    assert any(verdicts) and not all(verdicts)  # both kinds of slice were checked
    lung_px = sum(s.lung_area_px for s in explained.slices)
    assert explained.infection_percent == pytest.approx(
        100.0 * sum(s.infected_area_px for s in explained.slices) / lung_px)
    # a measurement in HU: the same whether or not the diseased slices were explained
    assert analyze(volume, bundle, saliency="none").infection_percent == pytest.approx(explained.infection_percent)
    # an extensive lesion is measured as extensive (the saliency area covered 1-3 % of such lungs)
    assert explained.infection_percent >= 0.5 * truth > 5.0
    assert explained.infection_percent <= explained.opacity["percent"] + 1e-6


def test_boxes_follow_the_slice_verdict(bundle, cap_study) -> None:
    from inference.pipeline import MAX_BOXES_DISEASED_SLICE, MAX_BOXES_PER_SLICE, MIN_BOX_AREA_MM2

    volume, _ = cap_study
    result = analyze(volume, bundle, saliency="positive")
    positive = positive_classes(bundle.classes)
    pixel_mm2 = float(volume.spacing_mm[1]) ** 2
    for s in result.slices:
        sick = max(s.probabilities, key=s.probabilities.get) in positive
        assert len(s.boxes) <= (MAX_BOXES_DISEASED_SLICE if sick else MAX_BOXES_PER_SLICE)
        if not sick:  # an opacity box holds a component of at least the minimum area
            for b in s.boxes:
                assert (b.x1 - b.x0 + 1) * (b.y1 - b.y0 + 1) * pixel_mm2 >= MIN_BOX_AREA_MM2
    assert any(s.boxes for s in result.slices if max(s.probabilities, key=s.probabilities.get) in positive)
