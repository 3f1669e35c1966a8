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
