"""Image decoding and normalisation: the single place where both are defined.

Every image, whatever its mode (L, RGBA, CMYK, P, ...), becomes RGB and is resized as a
whole (no crop: LFW's deep-funneled faces are already centred and aligned) to a square
`image_size` with Pillow's antialiased bilinear filter, and is kept as uint8 HWC.
The network sees (x / 255 - mean) / std in NCHW float32. The same constants are stored in
every checkpoint and export so that a client only decodes and resizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from siamese.errors import SiameseError


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "scale": 1 / 255, "layout": "NHWC uint8 RGB"}

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        return cls(tuple(d["mean"]), tuple(d["std"]))


NORMALIZATION = Normalization()


def decode_image(source, image_size: int, name: str | None = None) -> np.ndarray:
    """Decode a path or file object to a (size, size, 3) uint8 RGB array."""
    label = name or str(source)
    try:
        with Image.open(source) as img:
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                # composite transparent images on white, as a viewer would show them
                rgba = img.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(canvas, rgba)
            rgb = img.convert("RGB")
            if rgb.size != (image_size, image_size):
                rgb = rgb.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise SiameseError(f"image not found: {label}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SiameseError(f"cannot decode image {label}: {exc}") from None


def to_model_input(images: torch.Tensor, norm: Normalization = NORMALIZATION) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float normalised, on the images' device."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    return normalize(x, norm)


def normalize(x: torch.Tensor, norm: Normalization = NORMALIZATION) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] -> normalised."""
    mean = torch.tensor(norm.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
