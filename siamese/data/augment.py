"""The assignment's augmentation as one batched affine warp, so it runs on the training device.

With probability `p` (0.7) an image gets a random combination of: horizontal mirror,
rotation within +-30 degrees, translation within +-10 px and scaling in 0.7-1.3; each of the
four is included independently with probability 1/2, and each image of a pair is drawn
independently. Pixels that come from outside the image are black (zero), as in torchvision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    p: float = 0.7
    max_rotation_deg: float = 30.0
    max_translation_px: float = 10.0
    scale_range: tuple[float, float] = (0.7, 1.3)


def random_affine(
    n: int, size: int, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 2, 3) matrices in affine_grid's normalised coordinates (output -> input sampling),
    and the (n,) mask of images that are warped at all."""

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    apply = torch.rand(n, generator=generator) < cfg.p
    use = (torch.rand(4, n, generator=generator) < 0.5) & apply  # mirror, rotate, translate, scale
    mirror = torch.where(use[0], -1.0, 1.0)
    angle = torch.where(use[1], uniform(-1, 1) * math.radians(cfg.max_rotation_deg), 0.0)
    # affine_grid spans [-1, 1] over `size` pixels, so one pixel is 2 / size
    shift = torch.where(use[2], uniform(-1, 1), 0.0) * cfg.max_translation_px * 2 / size
    shift_y = torch.where(use[2], uniform(-1, 1), 0.0) * cfg.max_translation_px * 2 / size
    scale = torch.where(use[3], uniform(*cfg.scale_range), 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # sampling grid = inverse of (scale, rotate, translate), then a mirror of the output x
    theta = torch.stack(
        [
            torch.stack([cos * mirror, sin, -(cos * shift + sin * shift_y)], dim=1),
            torch.stack([-sin * mirror, cos, -(-sin * shift + cos * shift_y)], dim=1),
        ],
        dim=1,
    )
    return theta, use.any(dim=0)


def augment(images: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] -> same shape, randomly warped per image."""
    n, c, h, w = images.shape
    theta, warped = random_affine(n, w, cfg, generator)
    if not warped.any():
        return images
    idx = warped.nonzero().squeeze(1).to(images.device)
    theta = theta[warped].to(images.device, images.dtype)
    grid = F.affine_grid(theta, [len(idx), c, h, w], align_corners=False)
    out = images.clone()
    out[idx] = F.grid_sample(images[idx], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out
