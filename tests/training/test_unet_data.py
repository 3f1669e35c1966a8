"""The lung U-Net's simulated training data: real training backgrounds with lesions inside the truth lung."""
from __future__ import annotations

import pytest
import torch

from training.simulate.backgrounds import real_backgrounds
from training.unet import TRAIN_BACKGROUNDS, UNetConfig, make_data


def test_simulated_source_keeps_the_lesions_inside_the_truth_lung() -> None:
    if not real_backgrounds(TRAIN_BACKGROUNDS[:1]):
        pytest.skip("../shared/data/real-ct is absent: no real training backgrounds")
    cfg = UNetConfig(source="simulated", studies=4, cube=(16, 32, 32), size=64)
    data = make_data(cfg)
    assert len(data) == 4  # three simulated studies, one whole phantom chest
    lesioned = [d for d in data if bool(d.lesion.any())]
    assert lesioned  # CAP and COVID insertions
    for d in data:
        assert d.hu.shape == d.lung.shape == d.lesion.shape == torch.Size(cfg.cube)
    for d in lesioned:  # pathology-inclusive truth: lesion voxels lie in the lung mask
        assert float((d.lung[d.lesion] > 0.25).float().mean()) >= 0.95


def test_unknown_source_is_refused() -> None:
    with pytest.raises(ValueError):
        make_data(UNetConfig(source="magic", studies=1))


def test_lesion_pixels_weigh_more_in_the_loss() -> None:
    """``--lesion-weight``: the cross-entropy of a lesion pixel called background counts that many times; at 1 the
    loss is the plain soft Dice + cross-entropy."""
    from training.unet import loss_fn

    target = torch.ones(2, 8, 8)
    lesion = torch.zeros(2, 8, 8)
    lesion[:, :4] = 1.0
    logits = torch.full((2, 8, 8), 5.0)
    logits[:, :4] = -2.0  # the lesion half called background
    plain = loss_fn(logits, target)
    assert torch.equal(loss_fn(logits, target, lesion, 1.0), plain)
    assert float(loss_fn(logits, target, lesion, 3.0)) > float(plain) + 1.0
    logits_lesion_right = torch.where(lesion.bool(), torch.tensor(5.0), torch.tensor(-2.0))  # the rest wrong instead
    assert float(loss_fn(logits_lesion_right, target, lesion, 3.0)) < float(loss_fn(logits, target, lesion, 3.0))
