import io

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from siamese.core.errors import SiameseError, SiameseWarning
from siamese.core.preprocess import MAX_PIXELS, NORMALIZATION, Normalization, decode_image, image_file, to_model_input


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
    img = Image.linear_gradient("L").resize((250, 200)).convert("RGB").convert(mode)
    out = decode_image(encoded(img, fmt), 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


@pytest.mark.filterwarnings("ignore::siamese.core.errors.SiameseWarning")  # one-colour images, on purpose
def test_grey_stays_grey_and_transparency_composites_on_white():
    grey = decode_image(encoded(Image.new("L", (40, 40), 77), "PNG"), 16)
    assert (grey == 77).all()
    clear = decode_image(encoded(Image.new("RGBA", (40, 40), (0, 0, 0, 0)), "PNG"), 16)
    assert (clear == 255).all()


def png_16bit_rgb(values: np.ndarray) -> io.BytesIO:
    """A 48-bit (16 bits per channel) RGB PNG, which Pillow cannot write, written by hand."""
    import struct
    import zlib

    h, w, _ = values.shape
    raw = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return io.BytesIO(png)


def test_wide_images_are_scaled_to_8_bits_not_clipped():
    """16-bit grey, 48-bit RGB, 32-bit integer and float images decode to what a viewer shows."""
    ramp16 = np.tile(np.linspace(0, 65535, 64), (64, 1)).astype(np.uint16)  # black to white, left to right
    expected = np.tile(np.linspace(0, 255, 64), (64, 1))
    grey16 = decode_image(encoded(Image.fromarray(ramp16), "PNG"), 64)[..., 0]
    assert np.abs(grey16 - expected).max() <= 1.5
    rgb48 = decode_image(png_16bit_rgb(np.stack([ramp16, ramp16 // 2, 65535 - ramp16], -1)), 64)
    assert np.abs(rgb48[..., 0] - expected).max() <= 1.5
    assert np.abs(rgb48[..., 1] - expected / 2).max() <= 1.5
    assert np.abs(rgb48[..., 2] - (255 - expected)).max() <= 1.5
    as_int32 = decode_image(encoded(Image.fromarray(ramp16.astype(np.int32)), "TIFF"), 64)[..., 0]
    assert np.abs(as_int32 - expected).max() <= 1.5
    unit_float = decode_image(encoded(Image.fromarray((ramp16 / 65535).astype(np.float32)), "TIFF"), 64)[..., 0]
    assert np.abs(unit_float - expected).max() <= 1.5


def test_tiny_images_are_refused_and_blank_ones_warned_about():
    with pytest.raises(SiameseError, match="is 1x1: too small to show a face"):
        decode_image(encoded(Image.new("RGB", (1, 1), 9), "PNG"), 16, name="dot.png")
    with pytest.warns(SiameseWarning, match="blank.png is blank"):
        decode_image(encoded(Image.new("RGB", (64, 64), (30, 30, 30)), "PNG"), 16, name="blank.png")


def test_images_above_the_pixel_budget_are_refused_before_decoding():
    side = int(MAX_PIXELS**0.5) + 1
    bomb = encoded(Image.new("1", (side, side)), "PNG")  # a few kB on disk, 40 MP decoded
    assert len(bomb.getvalue()) < 200_000
    with pytest.raises(SiameseError, match=f"{side}x{side}: above the 40 MP decoding limit"):
        decode_image(bomb, 16, name="bomb.png")


def test_reads_stay_inside_the_image_root_however_spelled(tmp_path):
    root = tmp_path / "images"
    (root / "A").mkdir(parents=True)
    (root / "A" / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.jpg").write_bytes(b"x")
    (root / "A" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    (root / "B").symlink_to(tmp_path)
    assert image_file(root, "A/a.jpg") == (root / "A" / "a.jpg").resolve()
    for key in ("A/link.jpg", "B/secret.jpg", "A/../../secret.jpg"):
        with pytest.raises(SiameseError, match="outside the image root"):
            image_file(root, key)


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=4096), prefix=st.sampled_from([b"", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"GIF89a"])
)
def test_random_bytes_decode_or_raise_the_toolkit_error(data, prefix):
    try:
        out = decode_image(io.BytesIO(prefix + data), 16, name="fuzz")
    except SiameseError as exc:
        assert "fuzz" in str(exc)
    else:
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8


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


@pytest.mark.parametrize("fmt", ["EPS", "TGA", "ICO", "PPM", "PCX", "SGI"])
def test_formats_outside_the_allowlist_are_refused_by_name_before_decoding(fmt, tmp_path, monkeypatch):
    """EPS would be handed to Ghostscript; no outside program and no decoder of another format runs."""
    import subprocess

    started = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(a))
    path = tmp_path / f"face.{fmt.lower()}"
    Image.linear_gradient("L").convert("RGB").resize((64, 64)).save(path, format=fmt)
    with pytest.raises(SiameseError, match=rf"image .*face.{fmt.lower()} is {fmt}, which is not decoded \(only JPEG"):
        decode_image(path, 16)
    assert started == []
    disguised = tmp_path / "face.jpg"
    disguised.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\n")
    with pytest.raises(SiameseError, match="face.jpg is EPS, which is not decoded"):
        decode_image(disguised, 16)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF"])
def test_every_allowed_format_decodes(fmt):
    img = Image.linear_gradient("L").resize((48, 40)).convert("RGB")
    assert decode_image(encoded(img, fmt), 16).shape == (16, 16, 3)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "TIFF"])
@pytest.mark.parametrize(
    "orientation, stored_as",
    [(3, Image.Transpose.ROTATE_180), (6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)],
)
def test_exif_orientation_is_applied_as_a_viewer_shows_the_photo(fmt, orientation, stored_as):
    """A phone stores a portrait sideways with an orientation tag: it decodes as it is shown."""
    rng = np.random.default_rng(orientation)
    shown = Image.fromarray(rng.integers(0, 256, (8, 6, 3), dtype=np.uint8)).resize((60, 80), Image.Resampling.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    buf = io.BytesIO()
    save = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    shown.transpose(stored_as).save(buf, format=fmt, exif=exif.tobytes(), **save)
    buf.seek(0)
    decoded = decode_image(buf, 32).astype(int)
    expected = decode_image(encoded(shown, "PNG"), 32).astype(int)
    assert np.abs(decoded - expected).mean() < 6  # exact for PNG and TIFF; JPEG and WebP lose a little
    assert np.abs(decode_image(encoded(shown.transpose(stored_as), "PNG"), 32).astype(int) - expected).mean() > 30
