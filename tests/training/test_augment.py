"""Augmentation parameters stay in the paper's ranges and each transform does what it says."""
import torch

from training.augment import AugmentConfig, AugmentParams, apply_params, augment_batch, sample_params


def test_parameters_stay_in_range():
    cfg = AugmentConfig()
    p = sample_params(4000, cfg, torch.Generator().manual_seed(0))
    assert 0.7 <= float(p.scale.min()) and float(p.scale.max()) <= 1.0
    assert -25.0 <= float(p.angle_deg.min()) and float(p.angle_deg.max()) <= 25.0
    assert 0.5 <= float(p.contrast.min()) and float(p.contrast.max()) <= 1.5
    assert 0.45 < float(p.flip.float().mean()) < 0.55
    # the ranges are used, not just respected
    assert float(p.angle_deg.min()) < -24 and float(p.angle_deg.max()) > 24


def _identity(n: int) -> AugmentParams:
    return AugmentParams(scale=torch.ones(n), angle_deg=torch.zeros(n), flip=torch.zeros(n, dtype=torch.bool),
                         contrast=torch.ones(n))


def test_identity_parameters_leave_the_image_unchanged():
    x = torch.rand(2, 1, 32, 32)
    assert torch.allclose(apply_params(x, _identity(2)), x, atol=1e-5)


def test_flip_mirrors_columns_and_crop_zooms_in():
    x = torch.zeros(1, 1, 32, 32)
    x[..., :, :8] = 1.0  # bright left band
    p = _identity(1)
    p.flip = torch.tensor([True])
    flipped = apply_params(x, p)
    assert torch.allclose(flipped, torch.flip(x, dims=[-1]), atol=1e-5)
    p = _identity(1)
    p.scale = torch.tensor([0.5])  # centre half, enlarged: the left band (outer quarter) leaves the view
    zoomed = apply_params(x, p)
    assert float(zoomed[..., :, 1:].max()) < 1e-6 and float(zoomed[..., :, 0].max()) <= 0.25 + 1e-6


def test_rotation_by_90_degrees_turns_rows_into_columns():
    x = torch.zeros(1, 1, 33, 33)
    x[..., 16, :] = 1.0  # horizontal line
    p = _identity(1)
    p.angle_deg = torch.tensor([90.0])
    out = apply_params(x, p)
    assert float(out[..., :, 16].mean()) > 0.9 and float(out[..., 16, :].mean()) < 0.2


def test_contrast_scales_around_the_mean_and_clips():
    x = torch.tensor([0.25, 0.75]).repeat(16, 16).view(1, 1, 16, 32)
    p = _identity(1)
    p.contrast = torch.tensor([1.5])
    out = apply_params(x, p)
    assert torch.allclose(out.unique(), torch.tensor([0.125, 0.875]), atol=1e-5)
    p.contrast = torch.tensor([0.5])
    assert torch.allclose(apply_params(x, p).unique(), torch.tensor([0.375, 0.625]), atol=1e-5)


def test_same_generator_seed_same_batch():
    x = torch.rand(4, 1, 24, 24)
    a, _ = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(3))
    b, _ = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
