"""The shipped model through the pipeline the web app and the CLI run, on phantom DICOM series it never saw.

Training scores studies on its own prepared slices; this checks that ``inference.pipeline.analyze`` decides studies
the same way: only the slices with a quarter of the largest lung area decide, through the bundle's aggregation (it
once let apex and base slices, lung slivers the model never saw in training, into the top-k aggregation). Bundles
from 2.0.0 on are trained on simulated lesions, not on the phantom generator's own, so the phantom cases check the decision
rule, not the label; on simulated studies the pipeline must give the probabilities the training evaluation scored
(the classifier's; a bundle that decides with the HU opacity too fuses exactly those with it).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from inference.bundle import load_bundle
from inference.io import load_study
from inference.opacity_fusion import fuse
from inference.pipeline import aggregate_as, analyze
from training.phantom import generate_study, write_dicom_series

#: NP seeds 12-14 were labelled CAP, CAP and COVID before slices were filtered; the others are one of each disease.
CASES = [(12, "NP"), (13, "NP"), (14, "NP"), (15, "CAP"), (16, "COVID")]


@pytest.fixture(scope="module")
def bundle():
    torch.set_num_threads(2)
    return load_bundle("default", device="cpu")


def classifier_vector(result, bundle) -> np.ndarray:
    """The classifier's study probabilities; where the bundle decides with the opacity too, the decision must be
    the fusion of exactly these with the study's opacity (``inference.opacity_fusion``)."""
    own = result.classifier_probabilities or result.probabilities
    vector = np.array([own[c] for c in bundle.classes])
    if "opacity_fusion" in bundle.meta:
        fused = fuse(vector, bundle.classes, result.opacity, bundle.meta["opacity_fusion"])
        assert np.allclose([result.probabilities[c] for c in bundle.classes], fused, atol=1e-5)
    return vector


@pytest.mark.parametrize("seed,label", CASES)
def test_pipeline_decides_fresh_phantom_series_from_the_training_slices(bundle, tmp_path: Path, seed: int,
                                                                       label: str) -> None:
    write_dicom_series(generate_study(seed, label, size=256, n_slices=40), tmp_path)
    result = analyze(load_study(tmp_path), bundle, saliency="none")
    assert result.label == max(result.probabilities, key=result.probabilities.get)

    # Every lung slice is classified (the viewer's strip), but only the slices with at least a quarter of the
    # largest lung area decide the study, as in training.
    areas = np.array([s.lung_area_px for s in result.slices])
    probs = np.array([[s.probabilities[c] for c in bundle.classes] for s in result.slices])
    deciding = areas >= bundle.meta["aggregation"]["min_lung_fraction"] * areas.max()
    assert 0 < deciding.sum() < len(areas)
    study = aggregate_as(probs[deciding], bundle.classes, bundle.meta["aggregation"])
    assert np.allclose(classifier_vector(result, bundle), study, atol=1e-3)


def test_pipeline_scores_simulated_studies_as_the_training_evaluation_does(bundle) -> None:
    """Training and its held-out evaluation prepare a study with the lungs the pipeline segments (not the
    simulator's truth lungs): the pipeline's study probabilities are the ones the evaluation scores (bundle 2.0.0,
    trained on truth crops, labelled 2 of these 6 right through the pipeline against 20 of 27 in its evaluation)."""
    from training.calibration import logits_and_features, study_probabilities
    from training.datasets import PrepConfig, prepared_slices
    from training.simulate.backgrounds import simulated_studies

    prep = PrepConfig.for_bundle(bundle.meta)
    temperature = float(bundle.meta.get("calibration", {}).get("temperature", 1.0))
    for record in simulated_studies([f"phantom:{4242 * 100_000 + j}" for j in range(2)], 1, seed=4242):
        slices, _ = prepared_slices(record, prep)
        logits, _ = logits_and_features(bundle.model, torch.from_numpy(slices))
        expected = study_probabilities(logits, np.zeros(len(slices), dtype=int), bundle.classes,
                                       bundle.meta["aggregation"], temperature)[0]
        result = analyze(record.volume(), bundle, saliency="none")
        got = classifier_vector(result, bundle)
        assert np.allclose(got, expected, atol=0.01), (record.study_id, got, expected)
