"""The registry's new-vs-active comparison feeds each bundle the slices the pipeline feeds it: a bundle trained with
slices blanked beyond its lungs (``crop.outside_lungs_mm``) scored on whole crops would be compared on inputs it
never sees in use."""
from __future__ import annotations

from inference.bundle import load_bundle, save_bundle
from inference.classifier import MultiScaleVGG
from training.datasets import PrepConfig
from webapp.retraining.evaluation import prep_for


def test_the_comparison_prepares_slices_as_the_bundle_asks(tmp_path):
    save_bundle(MultiScaleVGG(num_classes=3, width=0.0625), tmp_path / "b",
                {"name": "t", "version": "1", "classes": ["NP", "CAP", "COVID"], "input_size": [64, 64],
                 "crop": {"margin": 0.1, "outside_lungs_mm": 12.5}})
    bundle = load_bundle(tmp_path / "b", device="cpu")
    base = PrepConfig(size=224, max_slices=5, min_lung_fraction=0.1)

    prep = prep_for(bundle, base)

    assert (prep.size, prep.margin, prep.outside_lungs_mm) == (64, 0.1, 12.5)
    assert prep.normalization == tuple(bundle.meta["normalization"].items())
    assert (prep.max_slices, prep.min_lung_fraction, prep.lungs) == (5, 0.1, base.lungs)
