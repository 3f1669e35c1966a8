"""The study prior shift: Bayes' rule in the pipeline's study decision, its fit, its nested estimate, its bundle
entry (inference.pipeline.shift_prior / aggregate_as, training.calibration, training.prior_shift)."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from inference.bundle import BundleError, load_bundle, resolve_path
from inference.pipeline import aggregate_as, shift_prior
from training.calibration import fit_prior_shift, held_out_prior_shifts
from training.prior_shift import prior_shift_report, write_prior_shift

CLASSES = ["NP", "CAP", "COVID"]


def _calibrated(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Probability vectors and classes drawn from them: a calibrated model's study outputs."""
    probs = rng.dirichlet([1.0, 1.0, 1.0], n)
    return probs, np.array([rng.choice(3, p=p) for p in probs])


def test_the_shift_moves_one_class_log_odds_and_nothing_else() -> None:
    p = np.array([0.2, 0.5, 0.3])
    q = shift_prior(p, CLASSES, {"NP": 1.0})
    assert q.sum() == pytest.approx(1.0)
    assert np.log(q[0] / q[1]) == pytest.approx(np.log(0.2 / 0.5) + 1.0)
    assert q[1] / q[2] == pytest.approx(0.5 / 0.3)
    assert shift_prior(p, CLASSES, {}) is p


def test_the_study_decision_applies_the_bundle_shift() -> None:
    slices = np.array([[0.4, 0.5, 0.1], [0.5, 0.3, 0.2]])
    plain = aggregate_as(slices, CLASSES, {"rule": "mean"})
    shifted = aggregate_as(slices, CLASSES, {"rule": "mean", "prior_shift": {"NP": 0.5}})
    assert plain.argmax() == 0 and shifted[0] > plain[0]
    np.testing.assert_allclose(shifted, shift_prior(plain, CLASSES, {"NP": 0.5}))


def test_the_fit_recovers_a_known_prior_shift() -> None:
    rng = np.random.default_rng(7)
    probs, labels = _calibrated(4000, rng)
    biased = shift_prior(probs, CLASSES, {"NP": -1.0})  # a model that underrates NP by one nat
    assert fit_prior_shift(biased, labels, CLASSES) == pytest.approx(1.0, abs=0.2)
    assert fit_prior_shift(probs, labels, CLASSES) == pytest.approx(0.0, abs=0.2)


def test_each_fold_is_scored_with_an_offset_fitted_without_it() -> None:
    rng = np.random.default_rng(3)
    folds = [_calibrated(300, rng) for _ in range(4)]
    offsets, shifted = held_out_prior_shifts(folds, CLASSES)
    changed = [folds[0]] + [(shift_prior(folds[1][0], CLASSES, {"NP": -2.0}), folds[1][1])] + folds[2:]
    offsets_changed, _ = held_out_prior_shifts(changed, CLASSES)
    assert offsets_changed[1] == offsets[1]  # fold 1's own studies do not choose its offset
    assert all(a != b for i, (a, b) in enumerate(zip(offsets, offsets_changed)) if i != 1)
    for (p, _), q, b in zip(folds, shifted, offsets):
        np.testing.assert_allclose(q, shift_prior(p, CLASSES, {"NP": b}))


def _folds_json(tmp_path, rng: np.random.Generator) -> None:
    folds = []
    for f in range(3):
        probs, labels = _calibrated(200, rng)
        folds.append({"fold": f, "held_out": f"background {f}", "models": {"MultiScaleVGG": {"held_out_studies": {
            "labels": labels.tolist(), "probs": {"joint": shift_prior(probs, CLASSES, {"NP": -1.5}).tolist()}}}}})
    (tmp_path / "folds.json").write_text(json.dumps({"classes": CLASSES, "folds": folds}))


def test_the_command_reports_the_nested_effect_and_writes_a_loadable_bundle(tmp_path) -> None:
    _folds_json(tmp_path, np.random.default_rng(11))
    report = prior_shift_report(tmp_path)
    nested = report["nested"]
    assert report["offset"] == pytest.approx(1.5, abs=0.35) and report["studies"] == 600
    assert nested["pooled_after"]["nll"] < nested["pooled_before"]["nll"]
    assert nested["pooled_after"]["sensitivity"]["NP"] > nested["pooled_before"]["sensitivity"]["NP"]
    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_path("default"), bundle)
    write_prior_shift(bundle, report, version="9.9.9")
    loaded = load_bundle(bundle, device="cpu")
    assert loaded.version == "9.9.9"
    assert loaded.meta["aggregation"]["prior_shift"] == {"NP": report["offset"]}
    assert loaded.meta["calibration"]["prior_shift"]["nested_nll"][1] == nested["pooled_after"]["nll"]


@pytest.mark.parametrize("shift", [{"Normal": 1.0}, {"NP": "high"}, {"NP": 40.0}, ["NP", 1.0]])
def test_a_bundle_with_a_malformed_shift_is_refused(tmp_path, shift) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(resolve_path("default"), bundle)
    meta = json.loads((bundle / "model.json").read_text())
    meta["aggregation"]["prior_shift"] = shift
    (bundle / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="prior_shift"):
        load_bundle(bundle, device="cpu")
