"""Metrics, study aggregation and t-intervals against hand-computed values (sklearn for AUC)."""
import math

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score

from inference.pipeline import aggregate
from training.metrics import classification_metrics, mean_ci, study_level


def test_binary_metrics_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    p1 = np.array([0.1, 0.6, 0.3, 0.8, 0.4, 0.9, 0.7])
    m = classification_metrics(y, np.stack([1 - p1, p1], axis=1), ["NP", "COVID"])
    # predictions: 0 1 0 1 0 1 1 -> TP 3, FN 1, FP 1, TN 2
    s = m["summary"]
    assert math.isclose(s["accuracy"], 5 / 7)
    assert math.isclose(s["precision"], 3 / 4)
    assert math.isclose(s["sensitivity"], 3 / 4)
    assert math.isclose(s["specificity"], 2 / 3)
    assert math.isclose(s["f1"], 2 * 3 / (2 * 3 + 1 + 1))
    assert math.isclose(s["auc"], roc_auc_score(y, p1))


def test_three_class_macro_and_per_class():
    y = np.array([0, 1, 2, 2, 1, 0])
    probs = np.array([[.7, .2, .1], [.2, .5, .3], [.1, .2, .7], [.3, .4, .3], [.6, .3, .1], [.5, .25, .25]])
    m = classification_metrics(y, probs, ["NP", "CAP", "COVID"])
    # predictions 0 1 2 1 0 0
    assert math.isclose(m["accuracy"], 4 / 6)
    cap = m["per_class"]["CAP"]  # TP 1 (idx1), FP 1 (idx3), FN 1 (idx4), TN 3
    assert math.isclose(cap["precision"], 0.5) and math.isclose(cap["sensitivity"], 0.5)
    assert math.isclose(cap["specificity"], 3 / 4)
    assert math.isclose(m["per_class"]["NP"]["precision"], 2 / 3)
    assert math.isclose(m["summary"]["auc"], roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert math.isclose(m["summary"]["sensitivity"], np.mean([r["sensitivity"] for r in m["per_class"].values()]))


def test_undefined_ratios_are_nan_not_zero():
    m = classification_metrics(np.array([0, 0]), np.array([[.9, .1], [.8, .2]]), ["NP", "COVID"])
    assert math.isnan(m["summary"]["sensitivity"]) and math.isnan(m["summary"]["auc"])
    assert m["summary"]["specificity"] == 1.0


def test_mean_ci_is_the_student_t_interval():
    values = [0.80, 0.85, 0.90, 0.75, 0.95]
    ci = mean_ci(values)
    half = stats.t.ppf(0.975, 4) * np.std(values, ddof=1) / math.sqrt(5)
    assert math.isclose(ci.mean, 0.85)
    assert math.isclose(ci.lo, 0.85 - half) and math.isclose(ci.hi, 0.85 + half)
    assert math.isclose(half, 2.776445 * 0.0790569 / math.sqrt(5), rel_tol=1e-5)  # t(0.975, 4) = 2.7764
    assert mean_ci([0.5, float("nan"), 0.7]).n == 2
    assert mean_ci([0.4]).lo == 0.4 and math.isnan(mean_ci([]).mean)


def test_mean_ci_stays_inside_the_metric_range():
    values = [0.0, 0.9, 0.1, 0.8, 0.0]  # mean 0.36, half-width 0.58: the raw interval crosses 0 and 1
    ci = mean_ci(values)
    assert math.isclose(ci.mean, 0.36) and ci.lo == 0.0 and ci.hi < 1.0
    assert mean_ci([1.0, 0.2, 1.0, 1.0, 0.9]).hi == 1.0
    raw = mean_ci(values, bounds=None)
    assert raw.lo < 0.0 and math.isclose(raw.hi - ci.mean, ci.mean - raw.lo)


def test_study_level_groups_slices():
    labels = np.array([1, 1, 0, 0, 0])
    study = np.array([3, 3, 7, 7, 7])
    probs = np.array([[.4, .6], [.7, .3], [.9, .1], [.8, .2], [.6, .4]])
    ids, y, p = study_level(labels, probs, study, ["NP", "COVID"], {"rule": "topk_mean", "k": 1})
    assert list(ids) == [3, 7] and list(y) == [1, 0]
    assert np.allclose(p, [[.4, .6], [.6, .4]])  # per study, the slice with the least P(NP)
    _, _, p2 = study_level(labels, probs, study, ["NP", "COVID"], {"rule": "topk_mean", "k": 2})
    assert np.allclose(p2[1], (probs[3] + probs[4]) / 2)
    _, _, mean = study_level(labels, probs, study, ["NP", "COVID"], {"rule": "mean"})
    assert np.allclose(mean[1], probs[2:].mean(0))
    # an unlabelled slice (-1) names no study's class but counts in its study's probabilities
    ids, y, mean = study_level(np.array([-1, 1, 0, 0, -1]), probs, study, ["NP", "COVID"], {"rule": "mean"})
    assert list(y) == [1, 0] and np.allclose(mean[0], probs[:2].mean(0)) and np.allclose(mean[1], probs[2:].mean(0))


def test_top_fraction_rule_takes_the_same_share_of_a_long_and_a_short_study():
    """The share of most suspicious slices, not a fixed count: a whole scan and its evenly spaced subsample of the
    same slice mix get the same study vector, where a fixed k = 5 reads 5 of 100 slices against 5 of 10."""
    classes = ["NP", "CAP", "COVID"]
    healthy, suspicious = np.array([0.9, 0.05, 0.05]), np.array([0.2, 0.7, 0.1])
    long = np.array([suspicious] * 10 + [healthy] * 90)
    short = np.array([suspicious] * 1 + [healthy] * 9)
    for probs in (long, short):
        assert np.allclose(aggregate(probs, classes, "topfraction_mean", fraction=0.2), (suspicious + healthy) / 2)
    assert not np.allclose(aggregate(long, classes, "topk_mean", k=5), aggregate(short, classes, "topk_mean", k=5))
    assert np.allclose(aggregate(short[:3], classes, "topfraction_mean", fraction=0.1), suspicious)  # at least one
