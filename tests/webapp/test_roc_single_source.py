"""One ROC drawing for the project: the registry's new-vs-active figure is ``training.report.roc_panels``, the
function the cross-validation report draws with (same curves in, same AUCs and the same PNG out)."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.report import roc_panels
from webapp.retraining import evaluation

CLASSES = ["NP", "CAP", "COVID"]


def predictions(labels: np.ndarray, probs: np.ndarray) -> dict:
    """The shape ``training.crossval.predictions`` returns, as far as the figure reads it."""
    return {"study": {"labels": labels.tolist(), "probs": {"joint": probs.tolist()}}}


def test_the_registry_figure_is_the_training_report_figure(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.tile([0, 1, 2], 8)
    new, active = rng.dirichlet(np.ones(3), size=24), rng.dirichlet(np.ones(3), size=24)

    aucs = evaluation.roc_figure({"new": predictions(labels, new), "active": predictions(labels, active)}, CLASSES,
                                 tmp_path / "registry.png")
    same = roc_panels([("new", labels, new, "-"), ("active", labels, active, "-")], CLASSES,
                      tmp_path / "report.png", level="study")

    assert aucs == same
    assert (tmp_path / "registry.png").read_bytes() == (tmp_path / "report.png").read_bytes()
    assert aucs["COVID"]["new"] == pytest.approx(roc_auc_score(labels == 2, new[:, 2]))
    assert set(aucs) == set(CLASSES)


def test_a_curve_with_one_class_only_gets_no_auc(tmp_path):
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
    aucs = roc_panels([("held out: NP only", np.zeros(3, int), probs, "-")], ["NP", "COVID"], tmp_path / "r.png",
                      level="study")
    assert aucs == {"COVID": {"held out: NP only": None}}
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"
