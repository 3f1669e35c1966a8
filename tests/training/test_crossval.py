"""Cross-validation scores each fold with the study rule its recipe would ship: chosen on the fold's validation
studies (``training.calibration.choose_aggregation``), not a fixed default."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training.calibration import AGGREGATION_CANDIDATES
from training.crossval import CrossvalConfig, ModelSpec, run_crossval
from training.datasets import TASKS, PrepConfig, build_slice_set, toy_studies
from training.train import TrainConfig


@pytest.fixture(scope="module")
def toy():
    torch.set_num_threads(1)
    return build_slice_set(toy_studies(18, seed=3, size=32, n_slices=3), TASKS["3way"], PrepConfig(size=32))


def _config(choose_rule: bool) -> CrossvalConfig:
    recipe = TrainConfig(iterations=10, batch_size=8, lr=3e-3, val_every=5, patience=100, log_every=5, seed=0,
                         progress_bar=False)
    return CrossvalConfig(folds=2, models=(ModelSpec("MultiScaleVGG", "MultiScaleVGG", 0.125),), train=recipe,
                          device="cpu", choose_rule=choose_rule)


def test_each_fold_is_scored_with_the_rule_chosen_on_its_validation_studies(toy, tmp_path) -> None:
    raw = run_crossval(toy, _config(True), tmp_path, log=lambda _: None)
    written = json.loads((tmp_path / "folds.json").read_text())
    candidates = list(AGGREGATION_CANDIDATES)
    for fold in (raw["folds"], written["folds"]):
        for f in fold:
            rule = f["models"]["MultiScaleVGG"]["study_rule"]
            assert {k: v for k, v in rule["aggregation"].items() if k in ("rule", "k", "fraction")} in candidates
            assert rule["aggregation"]["min_lung_fraction"] == _config(True).aggregation["min_lung_fraction"]
            assert rule["temperature"] >= 1.0


def test_each_held_out_study_is_kept_with_the_probabilities_its_figures_came_from(toy, tmp_path) -> None:
    run_crossval(toy, _config(True), tmp_path, log=lambda _: None)
    for fold in json.loads((tmp_path / "folds.json").read_text())["folds"]:
        model = fold["models"]["MultiScaleVGG"]
        kept = model["held_out_studies"]
        labels, joint = np.array(kept["labels"]), np.array(kept["probs"]["joint"])
        assert len(labels) == fold["n_test_studies"] and joint.shape == (len(labels), 3)
        # each row names its study, so a figure measured later on the study pairs with it
        assert len(set(kept["ids"])) == len(labels)
        assert [toy.study_labels[toy.study_ids.index(i)] for i in kept["ids"]] == kept["labels"]
        np.testing.assert_allclose(joint.sum(axis=1), 1.0, atol=1e-4)
        accuracy = model["metrics"]["study"]["joint"]["summary"]["accuracy"]
        assert float(np.mean(joint.argmax(axis=1) == labels)) == pytest.approx(accuracy)


def test_a_fixed_rule_when_asked(toy, tmp_path) -> None:
    config = _config(False)
    raw = run_crossval(toy, config, tmp_path, log=lambda _: None)
    for f in raw["folds"]:
        assert f["models"]["MultiScaleVGG"]["study_rule"] == {"aggregation": config.aggregation, "temperature": 1.0}
