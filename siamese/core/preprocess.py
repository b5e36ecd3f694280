"""Image decoding and normalisation: the single place where both are defined.

Only the formats in DECODED_FORMATS are decoded (Pillow knows dozens, some through outside
programs: EPS through Ghostscript); any other is refused by name before its pixels are read.
Every image, whatever its mode (L, RGBA, CMYK, P, 16-bit and float, ...), becomes 8-bit RGB
as a viewer would show it (EXIF orientation applied). Training resizes LFW's frames whole (the
deep-funneled faces are centred and aligned) to a square `image_size` with Pillow's antialiased
bilinear filter, kept as uint8 HWC; a photo is first framed like them (siamese.detect.frame).
The network sees (x / 255 - mean) / std in NCHW float32. The same constants are stored in
every checkpoint and export so that a client only decodes, frames and resizes.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from siamese.core.errors import SiameseError, SiameseWarning


@dataclass(frozen=True)
class Normalization:
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def to_dict(self) -> dict:
        return {"mean": list(self.mean), "std": list(self.std), "scale": 1 / 255, "layout": "NHWC uint8 RGB"}

    @classmethod
    def from_dict(cls, d: dict) -> Normalization:
        mean, std = tuple(d["mean"]), tuple(d["std"])
        numbers = all(isinstance(x, int | float) and math.isfinite(x) for x in mean + std)
        if len(mean) != 3 or len(std) != 3 or not numbers or min(std) <= 0:
            raise ValueError(f"mean and std must be 3 finite numbers each, std positive; got {mean}, {std}")
        return cls(mean, std)


NORMALIZATION = Normalization()

# Decoding limits. An image above MAX_PIXELS is refused before its pixels are decoded (Pillow's
# own check only warns at 89 MP), and at most DECODE_WORKERS images decode at once, so decoding
# never holds more than about DECODE_WORKERS x MAX_PIXELS x 4 bytes x 2 (a copy while converting).
MAX_PIXELS = 40_000_000
DECODE_WORKERS = min(8, os.cpu_count() or 1)
MIN_SIDE = 16  # fewer pixels than this on a side cannot show a face
# what cameras, phones, browsers and data sets write; a GIF or WebP animation decodes its first frame
DECODED_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF")
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")  # more than 8 bits per sample


def image_file(root: Path, key: str) -> Path:
    """The real path of image `key` under `root`, refused if it resolves outside the root
    (through `..`, an absolute path or a symbolic link, however it is spelled)."""
    real_root = Path(root).resolve()
    path = (real_root / key).resolve()
    if not path.is_relative_to(real_root):
        raise SiameseError(f"image {key!r} resolves to {path}, outside the image root {real_root}")
    return path


def check_pair_images(root: Path, keys) -> Path:
    """Refuse a missing image root or image before any model is loaded or file written.

    Returns the root; every key is checked with `image_file`'s rules, so a path leaving the root
    is refused here too.
    """
    root = Path(root)
    if not root.is_dir():
        raise SiameseError(f"image root {root} is not a folder")
    missing = [key for key in dict.fromkeys(keys) if not image_file(root, key).is_file()]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise SiameseError(f"image not found: {root / missing[0]}{more}")
    return root


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit, 32-bit and float grey images to 8 bits (Pillow's convert would clip them)."""
    values = np.asarray(img, dtype=np.float64)
    top = float(values.max(initial=0))
    if img.mode == "F":
        scale = 255.0 if top <= 1.0 else 1.0  # floats in [0, 1], else already in [0, 255]
    elif img.mode.startswith("I;16") or 255 < top <= 65535:
        scale = 255.0 / 65535.0
    else:
        scale = 255.0 / top if top > 65535 else 1.0
    return Image.fromarray(np.clip(np.rint(values * scale), 0, 255).astype(np.uint8), "L")


def _accepts(accept, prefix: bytes) -> bool:
    try:
        return bool(accept and accept(prefix))
    except Exception:  # a plugin's check can fail on a short prefix: that is a no
        return False


def refused_format(source) -> str | None:
    """The format of a file outside DECODED_FORMATS, named from its extension, else from its
    first bytes, the way Pillow would take it (no decoder runs)."""
    Image.init()
    if not hasattr(source, "read"):
        by_extension = Image.registered_extensions().get(Path(source).suffix.lower())
        if by_extension and by_extension not in DECODED_FORMATS:  # a .jpg that is no JPEG: sniff it
            return by_extension
        with open(source, "rb") as f:
            prefix = f.read(32)
    else:
        position = source.tell()
        prefix = source.read(32)
        source.seek(position)
    return next((name for name, (_, accept) in Image.OPEN.items() if _accepts(accept, prefix)), None)


def _open_allowed(source, label: str) -> Image.Image:
    try:
        return Image.open(source, formats=DECODED_FORMATS)
    except UnidentifiedImageError:
        found = refused_format(source)
        if found is None or found in DECODED_FORMATS:
            raise
        raise SiameseError(
            f"image {label} is {found}, which is not decoded (only {', '.join(DECODED_FORMATS)}): convert it first"
        ) from None


def decode_rgb(source, name: str | None = None) -> np.ndarray:
    """Decode a path or file object to an (H, W, 3) uint8 RGB array, as a viewer shows it."""
    label = name or str(source)
    try:
        with _open_allowed(source, label) as img:
            if img.width * img.height > MAX_PIXELS:
                raise SiameseError(
                    f"image {label} is {img.width}x{img.height}: above the {MAX_PIXELS / 1e6:.0f} MP decoding limit"
                )
            if min(img.size) < MIN_SIDE:
                raise SiameseError(f"image {label} is {img.width}x{img.height}: too small to show a face")
            img.load()
            img = ImageOps.exif_transpose(img)  # as a viewer shows it: phones store portraits rotated
            if img.mode in WIDE_MODES:
                img = _to_8bit(img)
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                # composite transparent images on white, as a viewer would show them
                rgba = img.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(canvas, rgba)
            rgb = img.convert("RGB")
            if all(low == high for low, high in rgb.getextrema()):
                warnings.warn(f"image {label} is blank (one colour): its answers mean nothing", SiameseWarning, 3)
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise SiameseError(f"image not found: {label}") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as exc:
        raise SiameseError(f"cannot decode image {label}: {exc}") from None


def resize(rgb: np.ndarray, image_size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (image_size, image_size, 3) uint8, bilinear, as in training."""
    if rgb.shape[:2] == (image_size, image_size):
        return rgb
    img = Image.fromarray(rgb).resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(img, dtype=np.uint8).copy()


def centre_crop(rgb: np.ndarray, share: float) -> np.ndarray:
    """The centred square whose side is `share` of the image's shorter side (1: the whole image)."""
    if share >= 1:
        return rgb
    height, width = rgb.shape[:2]
    side = max(1, round(min(height, width) * share))
    top, left = (height - side) // 2, (width - side) // 2
    return rgb[top : top + side, left : left + side]


def decode_image(source, image_size: int, name: str | None = None, crop: float = 1.0) -> np.ndarray:
    """Decode a path or file object to a (size, size, 3) uint8 RGB array: the frame's centred
    `crop` share (1: the whole frame), resized."""
    return resize(centre_crop(decode_rgb(source, name), crop), image_size)


def to_model_input(images, norm: Normalization = NORMALIZATION):
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float normalised, on the images' device."""
    x = images.permute(0, 3, 1, 2).float().div_(255)
    return normalize(x, norm)


def normalize(x, norm: Normalization = NORMALIZATION):
    """(N, 3, H, W) float tensor in [0, 1] -> normalised. (torch is imported here, not above:
    decoding, which every runtime's client does, needs no torch.)"""
    import torch

    mean = torch.tensor(norm.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(norm.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
