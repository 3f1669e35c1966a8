"""Floors for the generalisation checks on a small budget (the full-budget figures are in the model card).

Leave one source out: a tiny classifier trained only on simulated disease in real scans (the two Lung-PET-CT-Dx
backgrounds of ../shared/data) must separate pneumonia from non-pneumonia on the phantom, a source it never saw,
and the other way round the phantom-trained one on a real background it never saw. Chance is 0.5; the phantom-only
model of bundle 1.1.0 was at chance on independently generated data.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from training.crossval import predictions
from training.datasets import PrepConfig, build_slice_set
from training.simulate.backgrounds import simulated_studies
from training.train import TrainConfig, make_model, train

CLASSES = ("NP", "CAP", "COVID")
PREP = PrepConfig(size=64, max_slices=6)


def _disease_auc(train_specs: list[str], test_specs: list[str], per_class: int, tmp_path) -> float:
    train_set = build_slice_set(simulated_studies(train_specs, per_class, seed=5), CLASSES, PREP)
    test_set = build_slice_set(simulated_studies(test_specs, 1, seed=6), CLASSES, PREP)
    studies = np.arange(train_set.n_studies)
    val = studies[::5]
    torch.manual_seed(0)
    model = make_model("MultiScaleVGG", 3, width=0.125)
    config = TrainConfig(iterations=500, batch_size=16, lr=1e-3, val_every=100, patience=1000, log_every=100,
                         progress_bar=False)
    result = train(model, train_set.subset(np.setdiff1d(studies, val)), train_set.subset(val), config,
                   out_dir=tmp_path / "run")
    pred = predictions(result.model, test_set, {"rule": "topk_mean", "k": 3})
    disease = 1.0 - pred["study"]["probs"]["joint"][:, 0]
    return float(roc_auc_score(pred["study"]["labels"] > 0, disease))


@pytest.mark.slow
@pytest.mark.xfail(strict=False, reason="known gap (issue 11): since slices are cropped and normalised with the "
                   "lungs the pipeline segments instead of the simulator's truth lungs, this small-budget transfer "
                   "falls to AUC 0.54-0.57 (0.5703 in two runs on this machine, 0.5391 since the backgrounds' truth "
                   "lost the organ domes; it passes with PrepConfig.source_lungs); "
                   "not strict, as CPU kernels on another machine may move it by the few study pairs in between")
def test_real_backgrounds_to_phantom(shared_data, tmp_path) -> None:
    torch.set_num_threads(1)
    auc = _disease_auc(["Lung_Dx-A0001", "Lung_Dx-A0002"], [f"phantom:{88_000 + i}" for i in range(8)], 6, tmp_path)
    assert auc >= 0.6, f"pneumonia vs NP on an unseen source: AUC {auc:.2f} (chance 0.5)"
