"""The shipped model through the pipeline the web app and the CLI run, on phantom DICOM series it never saw.

Training scores studies on its own prepared slices; this checks that ``inference.pipeline.analyze`` decides studies
the same way. It did not: it let apex and base slices (lung slivers the model never saw in training) into the
top-k aggregation, and most NP phantoms came out CAP or COVID while the training evaluation called them all NP.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.bundle import load_bundle
from inference.io import load_study
from inference.pipeline import aggregate, analyze
from training.phantom import generate_study, write_dicom_series

#: NP seeds 12-14 were labelled CAP, CAP and COVID before slices were filtered; the others are one of each disease.
CASES = [(12, "NP"), (13, "NP"), (14, "NP"), (15, "CAP"), (16, "COVID")]


@pytest.fixture(scope="module")
def bundle():
    torch.set_num_threads(2)
    return load_bundle("default", device="cpu")


@pytest.mark.parametrize("seed,label", CASES)
def test_pipeline_labels_fresh_phantom_series(bundle, tmp_path: Path, seed: int, label: str) -> None:
    write_dicom_series(generate_study(seed, label, size=256, n_slices=40), tmp_path)
    result = analyze(load_study(tmp_path), bundle, saliency="none")
    assert result.label == label, result.probabilities

    # Every lung slice is classified (the viewer's strip), but only the slices with at least a quarter of the
    # largest lung area decide the study, as in training.
    areas = np.array([s.lung_area_px for s in result.slices])
    probs = np.array([[s.probabilities[c] for c in bundle.classes] for s in result.slices])
    deciding = areas >= bundle.meta["aggregation"]["min_lung_fraction"] * areas.max()
    assert 0 < deciding.sum() < len(areas)
    study = aggregate(probs[deciding], bundle.classes, "topk_mean", bundle.meta["aggregation"]["k"])
    assert np.allclose([result.probabilities[c] for c in bundle.classes], study, atol=1e-3)
