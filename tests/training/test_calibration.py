"""Temperature scaling, ECE and the domain model (training.calibration, inference.domain)."""
from __future__ import annotations

import numpy as np

from inference.domain import assess, trained_on_hu
from training.calibration import (choose_aggregation, expected_calibration_error, fit_domain, fit_temperature,
                                  study_probabilities)

CLASSES = ["NP", "CAP", "COVID"]
AGG = {"rule": "topk_mean", "k": 5}


def _overconfident(n_studies: int, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slice logits whose true posterior is softmax(z), inflated by ``scale`` (an overconfident model)."""
    labels = rng.integers(0, 3, n_studies)
    logits, study = [], []
    for s, y in enumerate(labels):
        z = rng.normal(0, 1.0, (6, 3))
        z[:, y] += 1.0
        true_probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        drawn = np.array([rng.choice(3, p=p) for p in true_probs.mean(axis=0, keepdims=True)])[0]
        labels[s] = drawn
        logits.append(z * scale)
        study += [s] * 6
    return np.concatenate(logits), np.asarray(study), labels


def test_temperature_undoes_overconfidence_and_lowers_ece() -> None:
    rng = np.random.default_rng(0)
    logits, study, labels = _overconfident(400, rng, scale=4.0)
    t = fit_temperature(logits, study, labels, CLASSES, AGG)
    assert 2.0 < t < 8.0, f"an overconfident model needs T > 1, got {t}"
    before = expected_calibration_error(labels, study_probabilities(logits, study, CLASSES, AGG, 1.0))
    after = expected_calibration_error(labels, study_probabilities(logits, study, CLASSES, AGG, t))
    assert after < before and after < 0.08


def test_ece_of_a_perfectly_calibrated_predictor_is_small() -> None:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], 5000)
    labels = np.array([rng.choice(3, p=p) for p in probs])
    assert expected_calibration_error(labels, probs) < 0.03
    assert expected_calibration_error(probs.argmax(axis=1), np.eye(3)[probs.argmax(axis=1)]) == 0.0


def test_domain_flags_shifted_features_and_passes_familiar_ones() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(0, 1, (2000, 16))
    val = rng.normal(0, 1, (300, 16))
    val_study = np.repeat(np.arange(30), 10)
    stats = fit_domain(train, val, val_study)
    familiar = [assess(rng.normal(0, 1, (10, 16)), stats)["outside"] for _ in range(50)]
    shifted = [assess(rng.normal(1.5, 1, (10, 16)), stats)["outside"] for _ in range(50)]
    assert sum(familiar) <= 3 and sum(shifted) >= 47
    assert assess(rng.normal(0, 1, (10, 16)), stats, lungs_found=False)["outside"], "no lungs: always outside"
    assert assess(rng.normal(0, 1, (10, 16)), stats, familiar_input=False)["outside"], "8-bit to a HU model"
    assert assess(rng.normal(0, 1, (10, 16)), None) is None


def test_study_rule_is_chosen_on_validation_studies_of_every_length() -> None:
    """Healthy studies whose false-alarm slices grow with their length (a whole scan has more of them than a slab)
    and diseased studies with disease on a large share of the slices: a fixed top-k calls the long healthy ones
    diseased, a share of the slices does not, and the choice keeps the base's other keys."""
    rng = np.random.default_rng(3)
    logits, study, labels = [], [], []
    for s in range(120):
        n, y = int(rng.integers(8, 120)), int(rng.integers(0, 3))
        z = np.tile([3.0, 0.0, 0.0], (n, 1)) + rng.normal(0, 0.3, (n, 3))
        sick = rng.random(n) < (0.06 if y == 0 else 0.5)
        z[sick] = np.roll([3.0, 0.0, 0.0], max(y, 1)) + rng.normal(0, 0.3, (int(sick.sum()), 3))
        if y and not sick.any():
            z[0] = np.roll([3.0, 0.0, 0.0], y)
        logits.append(z)
        study += [s] * n
        labels.append(y)
    logits, study, labels = np.concatenate(logits), np.asarray(study), np.asarray(labels)
    aggregation, t = choose_aggregation(logits, study, labels, CLASSES, {"rule": "topk_mean", "k": 5,
                                                                          "min_lung_fraction": 0.25})
    assert aggregation["rule"] == "topfraction_mean" and "k" not in aggregation, aggregation
    assert aggregation["min_lung_fraction"] == 0.25 and t >= 1.0
    accuracy = (study_probabilities(logits, study, CLASSES, aggregation, t).argmax(1) == labels).mean()
    fixed = (study_probabilities(logits, study, CLASSES, {"rule": "topk_mean", "k": 5}, 1.0).argmax(1) == labels).mean()
    assert accuracy > fixed + 0.1, (accuracy, fixed)


def test_a_bundle_says_which_kind_of_pixel_values_it_learned_from() -> None:
    assert trained_on_hu({"training": {"source": "simulated"}}) and trained_on_hu({})
    assert not trained_on_hu({"training": {"source": "images"}})
