"""Integrated Gradients: completeness, and the fast shared-forward path against captum's reference."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.classifier import MultiScaleVGG
from inference.saliency import SaliencyEngine, captum_ig, gauss_legendre, joint_saliency


def _model(seed: int = 0) -> MultiScaleVGG:
    """A tiny eval-mode model with non-trivial BatchNorm statistics (so folding them is really exercised)."""
    torch.manual_seed(seed)
    model = MultiScaleVGG(3, width=0.125)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def _image(seed: int = 1, size: int = 224) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 1, size, size, generator=g)


def test_nodes_match_captums_gauss_legendre() -> None:
    from captum.attr._utils.approximation_methods import approximation_parameters

    step_sizes, alphas = approximation_parameters("gausslegendre")
    ours_a, ours_w = gauss_legendre(25)
    np.testing.assert_allclose(ours_a, alphas(25), atol=1e-12)
    np.testing.assert_allclose(ours_w, step_sizes(25), atol=1e-12)


@pytest.mark.parametrize("scale", [0, 1, 2])
def test_completeness(scale: int) -> None:
    """Sum of attributions = F(x) - F(0) (IG's completeness axiom) within 1% at m = 25, reference and fast path.

    A freshly initialised eval-mode network (BatchNorm an identity, head biases set) is affine along the straight
    path from the zero baseline, so the quadrature is exact and any error is the implementation's. (With arbitrary
    BatchNorm shifts, the max pooling kinks make 25 nodes a few percent off; that is IG's approximation, not a bug.)
    """
    torch.manual_seed(5)
    model = MultiScaleVGG(3, width=0.125).eval()
    for head in model.heads:
        torch.nn.init.uniform_(head.bias, -1.0, 1.0)
    x = _image(size=96)
    target = 2
    f = model.scale_forward(scale)
    with torch.no_grad():
        delta = float(f(x)[0, target] - f(torch.zeros_like(x))[0, target])
    reference = float(captum_ig(model.double(), x.double(), target, steps=25)[scale].sum())
    fast = float(SaliencyEngine(model.float()).attribute(x, target).ig[scale].sum())
    assert abs(reference - delta) <= 0.01 * abs(delta)
    assert abs(fast - delta) <= 0.01 * abs(delta)


def test_fast_path_equals_captum_per_scale() -> None:
    model = _model(3)
    x = _image(4)
    target = 1
    fast = SaliencyEngine(model).attribute(x, target)
    reference = captum_ig(model, x, target)
    for ours, ref in zip(fast.ig, reference):
        ref = ref.numpy()
        assert np.corrcoef(ours.ravel(), ref.ravel())[0, 1] > 0.999
        # BatchNorm folding moves a few pre-activations across zero by float rounding: allow that, nothing more
        np.testing.assert_allclose(ours, ref, atol=5e-3 * np.abs(ref).max())
    np.testing.assert_allclose(fast.joint, joint_saliency(reference), atol=5e-3 * np.abs(fast.joint).max())


def test_fast_path_works_inside_inference_mode() -> None:
    """The pipeline classifies under inference_mode; the saliency step must still get gradients."""
    model = _model()
    with torch.inference_mode():
        x = _image()
        maps = SaliencyEngine(model, steps=5).attribute(x, 0)
    assert all(np.abs(m).sum() > 0 for m in maps.ig)


def test_engine_refuses_training_mode() -> None:
    with pytest.raises(ValueError):
        SaliencyEngine(MultiScaleVGG(3, width=0.125).train())
