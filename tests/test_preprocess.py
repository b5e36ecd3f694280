import io

import numpy as np
import pytest
import torch
from PIL import Image

from siamese.errors import SiameseError
from siamese.preprocess import NORMALIZATION, Normalization, decode_image, to_model_input


def encoded(img: Image.Image, fmt: str) -> io.BytesIO:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    buf.seek(0)
    return buf


@pytest.mark.parametrize(
    "mode, fmt",
    [
        ("RGB", "JPEG"),
        ("L", "JPEG"),
        ("CMYK", "JPEG"),
        ("RGBA", "PNG"),
        ("P", "PNG"),
        ("LA", "PNG"),
        ("I;16", "PNG"),
        ("1", "PNG"),
    ],
)
def test_every_mode_becomes_rgb_uint8_of_the_requested_size(mode, fmt):
    img = Image.new("RGB", (250, 200), (200, 40, 90)).convert(mode)
    out = decode_image(encoded(img, fmt), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


def test_grey_stays_grey_and_transparency_composites_on_white():
    grey = decode_image(encoded(Image.new("L", (40, 40), 77), "PNG"), 16)
    assert (grey == 77).all()
    clear = decode_image(encoded(Image.new("RGBA", (40, 40), (0, 0, 0, 0)), "PNG"), 16)
    assert (clear == 255).all()


def test_missing_and_corrupt_images_are_one_line_errors(tmp_path):
    with pytest.raises(SiameseError, match="image not found"):
        decode_image(tmp_path / "missing.jpg", 16)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(SiameseError, match="cannot decode image .*bad.jpg"):
        decode_image(bad, 16)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(SiameseError, match="cannot decode image .*empty.jpg"):
        decode_image(empty, 16)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(encoded(Image.new("RGB", (64, 64), 3), "JPEG").getvalue()[:200])
    with pytest.raises(SiameseError, match="truncated.jpg"):
        decode_image(truncated, 16)


def test_normalisation_maps_uint8_to_minus_one_one_in_nchw():
    images = torch.tensor([[[[0, 255, 128]]]], dtype=torch.uint8)  # (1, 1, 1, 3)
    x = to_model_input(images)
    assert x.shape == (1, 3, 1, 1)
    assert x.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 255 * 2 - 1], abs=1e-6)
    assert Normalization.from_dict(NORMALIZATION.to_dict()) == NORMALIZATION
