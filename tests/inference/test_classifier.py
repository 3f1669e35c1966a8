"""The paper's architecture: layer list, parameter count at full width, CAM sizes per scale."""
from __future__ import annotations

import torch

from inference.classifier import MultiScaleVGG, layer_spec

PAPER_SPEC = ["C32", "C32", "MP", "C64", "C64", "MP", "C128", "C128", "C128", "MP",
              "C256", "C256", "C256", "MP", "C256", "C256", "C256", "MP"]


def test_layer_spec_is_the_papers() -> None:
    assert layer_spec(MultiScaleVGG(3)) == PAPER_SPEC


def test_parameter_count_at_full_width_is_pinned() -> None:
    # convs 3,677,472 (no bias) + BatchNorm 4,224 + three 1x1 heads 1,929
    assert sum(p.numel() for p in MultiScaleVGG(3).parameters()) == 3_683_625


def test_cams_per_scale_and_joint_logits() -> None:
    model = MultiScaleVGG(3, width=0.125).eval()
    with torch.no_grad():
        out = model.forward_all(torch.rand(2, 1, 224, 224))
    assert [tuple(c.shape) for c in out.cams] == [(2, 3, 28, 28), (2, 3, 14, 14), (2, 3, 7, 7)]
    assert torch.allclose(out.logits, sum(out.scale_scores))
    for scale in range(3):
        with torch.no_grad():
            assert torch.allclose(model.scale_forward(scale)(torch.zeros(1, 1, 224, 224)),
                                  model.forward_all(torch.zeros(1, 1, 224, 224)).scale_scores[scale])
