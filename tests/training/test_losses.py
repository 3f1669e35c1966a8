"""The focal class-balanced loss against hand-computed values, and the class weights from frequencies."""
import math

import pytest
import torch

from training.losses import FocalBalancedLoss, class_weights, focal_balanced_loss


def test_class_weights_are_inverse_frequencies_summing_to_k():
    # freq = (0.5, 0.25, 0.25) -> 1/freq = (2, 4, 4), sum 10 -> scaled to sum 3: (0.6, 1.2, 1.2)
    w = class_weights([0, 0, 1, 2], 3)
    assert torch.allclose(w, torch.tensor([0.6, 1.2, 1.2]))
    assert math.isclose(float(w.sum()), 3.0, rel_tol=1e-6)


def test_balanced_labels_give_unit_weights_and_absent_class_zero():
    assert torch.allclose(class_weights([0, 1, 2, 0, 1, 2], 3), torch.ones(3))
    w = class_weights([0, 0, 0, 1], 3)  # class 2 absent: weight 0; freq (0.75, 0.25) -> (4/3, 4) -> sum to 3
    assert w[2] == 0
    assert torch.allclose(w[:2], torch.tensor([0.75, 2.25]))


def test_focal_loss_matches_formula_by_hand():
    # Two classes, logits (0, ln 3): p = (0.25, 0.75).
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    target = torch.tensor([1, 0])
    weight = torch.tensor([0.5, 1.5])
    expected_1 = -1.5 * (1 - 0.75) * math.log(0.75)   # sample of class 1
    expected_0 = -0.5 * (1 - 0.25) * math.log(0.25)   # sample of class 0
    got = focal_balanced_loss(logits, target, weight, gamma=1.0, reduction="none")
    assert torch.allclose(got, torch.tensor([expected_1, expected_0]), atol=1e-6)
    mean = focal_balanced_loss(logits, target, weight, gamma=1.0)
    assert math.isclose(float(mean), (expected_1 + expected_0) / 2, rel_tol=1e-6)


def test_gamma_zero_unweighted_is_cross_entropy_and_module_form_agrees():
    g = torch.Generator().manual_seed(0)
    logits, target = torch.randn(8, 3, generator=g), torch.randint(0, 3, (8,), generator=g)
    ce = torch.nn.functional.cross_entropy(logits, target)
    assert torch.allclose(focal_balanced_loss(logits, target, None, gamma=0.0), ce, atol=1e-6)
    w = class_weights(target, 3)
    assert torch.allclose(FocalBalancedLoss(w, gamma=1.0)(logits, target), focal_balanced_loss(logits, target, w, 1.0))


def test_focal_factor_down_weights_easy_samples():
    easy = focal_balanced_loss(torch.tensor([[5.0, 0.0]]), torch.tensor([0]), gamma=1.0)
    easy_ce = focal_balanced_loss(torch.tensor([[5.0, 0.0]]), torch.tensor([0]), gamma=0.0)
    assert float(easy) < 0.01 * float(easy_ce)


def test_bad_reduction_is_refused():
    with pytest.raises(ValueError):
        focal_balanced_loss(torch.zeros(1, 2), torch.tensor([0]), reduction="avg")
