"""The registry's new-vs-active comparison feeds each bundle the slices the pipeline feeds it: the shipped
``default`` blanks beyond its lungs (``crop.outside_lungs_mm``), so scoring it on whole crops would compare a model
on inputs it never sees in use."""
from __future__ import annotations

from inference.bundle import load_bundle
from training.datasets import PrepConfig
from webapp.retraining.evaluation import prep_for


def test_the_comparison_prepares_slices_as_the_bundle_asks():
    bundle = load_bundle("default", device="cpu")
    base = PrepConfig(size=224, max_slices=5, min_lung_fraction=0.1)

    prep = prep_for(bundle, base)

    crop = bundle.meta["crop"]
    assert prep.size == bundle.meta["input_size"][0] and prep.margin == crop["margin"]
    assert prep.outside_lungs_mm == crop.get("outside_lungs_mm") is not None
    assert prep.normalization == tuple(bundle.meta["normalization"].items())
    assert (prep.max_slices, prep.min_lung_fraction, prep.lungs) == (5, 0.1, base.lungs)
