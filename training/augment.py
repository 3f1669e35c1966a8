"""On-the-fly augmentation of [0, 1] lung crops, batched torch ops (no torchvision), as in the paper.

Per sample, independently: a centred square crop covering ``scale`` in [0.7, 1] of the side, resized back to the
input size; a rotation by an angle in [-25, 25] degrees; a horizontal flip with p = 0.5; a contrast factor in
[0.5, 1.5] (torchvision's ``adjust_contrast`` rule: blend with the image mean, then clip to [0, 1]). Crop, rotation
and flip are one affine resampling (bilinear, zeros outside, i.e. air after normalisation), so the image is
interpolated once. Randomness comes from an explicit ``torch.Generator``, which makes training resumable bit for bit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "AugmentParams", "sample_params", "apply_params", "augment_batch"]


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random transforms; the defaults are the paper's."""

    crop_scale: tuple[float, float] = (0.7, 1.0)
    rotation_deg: float = 25.0
    hflip_p: float = 0.5
    contrast: tuple[float, float] = (0.5, 1.5)


@dataclass
class AugmentParams:
    """One batch's drawn parameters, (B,) each: kept so tests (and debugging) can see what was applied."""

    scale: torch.Tensor
    angle_deg: torch.Tensor
    flip: torch.Tensor
    contrast: torch.Tensor


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator)


def sample_params(n: int, config: AugmentConfig, generator: torch.Generator) -> AugmentParams:
    """Draw the parameters for ``n`` samples on the CPU generator (device-independent, so runs reproduce)."""
    return AugmentParams(
        scale=_uniform(n, *config.crop_scale, generator),
        angle_deg=_uniform(n, -config.rotation_deg, config.rotation_deg, generator),
        flip=torch.rand(n, generator=generator) < config.hflip_p,
        contrast=_uniform(n, *config.contrast, generator),
    )


def apply_params(images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Apply drawn parameters to ``images`` (B, C, H, W) in [0, 1]; returns a new tensor of the same shape."""
    b = images.shape[0]
    dev, dt = images.device, images.dtype
    theta_rad = params.angle_deg.to(dev, torch.float32) * (math.pi / 180.0)
    scale = params.scale.to(dev, torch.float32)
    cos, sin = torch.cos(theta_rad) * scale, torch.sin(theta_rad) * scale
    flip = torch.where(params.flip.to(dev), -1.0, 1.0)
    # Output grid -> input grid (normalised coordinates): input = scale * R(theta) @ diag(flip, 1) @ output.
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    factor = params.contrast.to(dev, torch.float32).view(b, 1, 1, 1)
    return ((out - mean) * factor + mean).clamp_(0.0, 1.0).to(dt)


def augment_batch(images: torch.Tensor, config: AugmentConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, AugmentParams]:
    """Draw parameters for every sample and apply them; returns the augmented batch and the parameters."""
    params = sample_params(images.shape[0], config, generator)
    return apply_params(images, params), params
