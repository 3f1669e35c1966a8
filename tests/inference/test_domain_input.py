"""A HU model given 8-bit display images says the result is unreliable, whatever its feature distance says."""
from __future__ import annotations

import numpy as np

from inference.bundle import load_bundle
from inference.io import Volume
from inference.pipeline import analyze
from training.simulate.backgrounds import background, simulate


def test_an_hu_model_flags_8bit_images_of_a_chest_it_reads_in_hu() -> None:
    bundle = load_bundle("default", device="cpu")
    sample, _ = simulate(np.random.default_rng(7), background("phantom:977100"), "NP")
    hu = sample.hu.astype(np.float32)
    grey = np.clip((hu + 1350.0) / 1500.0 * 255.0, 0, 255).round()  # the lung window, as a published figure
    as_hu = analyze(Volume(array=hu, kind="nifti", is_hu=True, spacing_mm=sample.spacing_mm), bundle, saliency="none")
    as_grey = analyze(Volume(array=grey.astype(np.float32), kind="images", is_hu=False), bundle, saliency="none")
    assert as_grey.domain["outside"]
    # HU into a HU model: only the score decides (the kind rule did not fire)
    assert as_hu.domain["outside"] is (as_hu.domain["score"] > as_hu.domain["threshold"])
