"""Decode, find the face, frame it as the training images are framed, resize: what every
client does to a photo before the embedding graph sees it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamese.core.errors import SiameseError
from siamese.core.preprocess import decode_rgb, resize
from siamese.detect import Face, create
from siamese.detect.framing import Framing, crop


class NoFace(SiameseError):
    """No face was found in an image: it gets no verdict."""


@dataclass(frozen=True)
class Framed:
    pixels: np.ndarray  # (image_size, image_size, 3) uint8: what the network sees
    faces: int  # faces found (the largest is used); 0 for the whole-frame framing
    how: str  # "cropped", "as is" (framed as in training already) or "whole frame"
    face: Face | None = None  # the largest face's box, in the decoded image's pixels

    def describe(self) -> str:
        if self.face is None:
            return self.how
        f = self.face
        found = f"{self.faces} faces found, the largest" if self.faces > 1 else "face"
        return f"{found} at x {f.x:.0f}, y {f.y:.0f}, {f.width:.0f} x {f.height:.0f} px: {self.how}"


class Framer:
    """Applies one Framing; the detector is created (and its model checked) on first use."""

    def __init__(self, framing: Framing, image_size: int):
        self.framing, self.image_size = framing, image_size
        self._detector = None

    @property
    def detects(self) -> bool:
        return self.framing.kind == "detected"

    def frame(self, rgb: np.ndarray, label: str) -> Framed:
        if not self.detects:
            return Framed(resize(rgb, self.image_size), 0, "whole frame")
        if self._detector is None:
            self._detector = create(self.framing.detector)
        faces = self._detector.detect(rgb)
        if not faces:
            raise NoFace(f"no face found in {label} (--no-detect uses the whole image)")
        height, width = rgb.shape[:2]
        if self.framing.already_framed(faces[0], width, height):
            return Framed(resize(rgb, self.image_size), len(faces), "as is (framed as the training images)", faces[0])
        pixels = resize(crop(rgb, self.framing.crop_box(faces[0])), self.image_size)
        return Framed(pixels, len(faces), "cropped to the training framing", faces[0])

    def load(self, path: Path) -> Framed:
        return self.frame(decode_rgb(path), str(path))
