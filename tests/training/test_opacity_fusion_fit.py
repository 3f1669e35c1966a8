"""Fitting the study decision on the classifier and the HU opacity (training.opacity_fusion): the fit, the held-out
studies made again from their ids, the nested report and the bundle entry the pipeline then reads."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inference.bundle import load_bundle, resolve_path
from inference.opacity_fusion import fused_probabilities
from inference.pipeline import study_opacity
from training.opacity_fusion import fit_fusion, opacity_fusion_report, opacity_says_whether, write_opacity_fusion
from training.simulate.backgrounds import record_from_id, simulated_studies

CLASSES = ["NP", "CAP", "COVID"]


def test_the_fit_is_the_penalised_maximum_likelihood() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 600)
    x = rng.normal(size=(600, 5)) + 1.5 * np.eye(3, 5)[labels]  # each class raises one feature
    params = fit_fusion(x, labels, 3, c=1.0)
    coef = np.array(params["coef"])
    residual = fused_probabilities(x, {**params, "classes": CLASSES}) - np.eye(3)[labels]
    # stationary: the penalty's gradient balances the likelihood's, the intercepts' gradient vanishes
    np.testing.assert_allclose(coef + residual.T @ x, 0.0, atol=1e-3)
    np.testing.assert_allclose(residual.sum(axis=0), 0.0, atol=1e-3)
    assert np.mean(fused_probabilities(x, {**params, "classes": CLASSES}).argmax(axis=1) == labels) > 0.7
    # a stronger penalty shrinks the coefficients
    assert np.abs(fit_fusion(x, labels, 3, c=0.01)["coef"]).sum() < np.abs(coef).sum()
    # coefficients left out of the fit stay 0, and the others are stationary
    free = np.ones((3, 5), dtype=bool)
    free[1:, 3] = False
    params = fit_fusion(x, labels, 3, c=1.0, free=free)
    coef = np.array(params["coef"])
    assert (coef[~free] == 0).all() and (coef[free] != 0).all()
    residual = fused_probabilities(x, {**params, "classes": CLASSES}) - np.eye(3)[labels]
    np.testing.assert_allclose((coef + residual.T @ x)[free], 0.0, atol=1e-3)


def test_the_opacity_says_whether_not_which() -> None:
    free = opacity_says_whether(["CAP", "NP", "COVID"])
    assert free.shape == (3, 4) and free[:, :3].all()
    assert free[:, 3].tolist() == [False, True, False]
    with pytest.raises(ValueError, match="NP"):
        opacity_says_whether(["Normal", "COVID"])


def test_a_held_out_study_is_made_again_from_its_id() -> None:
    record = next(simulated_studies(["phantom:977102"], 1, 5, CLASSES))
    again = record_from_id(record.study_id, CLASSES)
    assert again.study_id == record.study_id and again.label == record.label
    np.testing.assert_array_equal(again.array, record.array)
    np.testing.assert_array_equal(again.lesion_mask, record.lesion_mask)
    for bad in ("sim-phantom-PHANTOM-977102-5-000-Flu", "study-1", "sim-NOBODY-5-000-NP"):
        with pytest.raises((ValueError, KeyError)):
            record_from_id(bad, CLASSES)


def test_the_command_measures_the_held_out_studies_and_writes_a_loadable_bundle(tmp_path) -> None:
    rng = np.random.default_rng(11)
    folds, records = [], {}
    for f, spec in enumerate(["phantom:977103", "phantom:977104"]):
        studies = list(simulated_studies([spec], 2, 7, CLASSES))
        records.update({r.study_id: r for r in studies})
        labels = [CLASSES.index(r.label) for r in studies]
        folds.append({"fold": f, "held_out": spec, "models": {"MultiScaleVGG": {"held_out_studies": {
            "ids": [r.study_id for r in studies], "labels": labels,
            "probs": {"joint": rng.dirichlet([1.0, 1.0, 1.0], len(studies)).round(5).tolist()}}}}})
    (tmp_path / "folds.json").write_text(json.dumps({"classes": CLASSES, "folds": folds}))

    report = opacity_fusion_report(tmp_path)
    measured = json.loads((tmp_path / "opacity.json").read_text())
    assert set(measured) == set(records) and report["studies"] == 12
    some_id = sorted(records)[0]
    record = records[some_id]
    again = study_opacity(record.volume())
    assert measured[some_id] == {"percent": again["percent"], "high_percent": again["high_percent"]}
    nested = report["nested"]
    assert [f["held_out"] for f in nested["per_fold"]] == ["phantom:977103", "phantom:977104"]
    for figures in (nested["pooled_before"], nested["pooled_after"]):
        assert 0.0 <= figures["accuracy"] <= 1.0 and figures["nll"] > 0
    # the healthy studies hold less opacity than the diseased ones, and the fit reads it that way
    po = report["opacity_percent_median"]
    assert po["NP"] < min(po["CAP"], po["COVID"])
    coef = report["params"]["coef"]
    assert coef[0][3] < 0 and coef[1][3] == coef[2][3] == 0  # more opacity, less NP; it says whether, not which

    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_path("default"), bundle)
    write_opacity_fusion(bundle, report, version="9.9.9")
    loaded = load_bundle(bundle, device="cpu")
    assert loaded.version == "9.9.9"
    fusion = loaded.meta["opacity_fusion"]
    assert fusion["coef"] == report["params"]["coef"] and fusion["classes"] == CLASSES
    assert fusion["nested_nll"] == [nested["pooled_before"]["nll"], nested["pooled_after"]["nll"]]
