"""Decode, find the face, frame it as the training images are framed, resize: what every
client does to a photo before the embedding graph sees it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamese.core.errors import SiameseError
from siamese.core.preprocess import decode_rgb, resize
from siamese.detect import Face, create
from siamese.detect.base import Detector
from siamese.detect.framing import MEASURED_FRAME_PX, Framing, crop


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

    @property
    def detector(self) -> Detector:
        if self._detector is None:
            self._detector = create(self.framing.detector)
        return self._detector

    def frame(self, rgb: np.ndarray, label: str) -> Framed:
        if not self.detects:
            return Framed(resize(self.framing.network_view(rgb), self.image_size), 0, "whole frame")
        faces = self.detector.detect(rgb)
        if not faces:
            raise NoFace(f"no face found in {label} (--no-detect uses the whole image)")
        height, width = rgb.shape[:2]
        if self.framing.already_framed(faces[0], width, height):
            pixels = resize(self.framing.network_view(rgb), self.image_size)
            return Framed(pixels, len(faces), "as is (framed as the training images)", faces[0])
        face = self.refine(rgb, faces[0])
        pixels = resize(crop(rgb, self.framing.crop_box(face)), self.image_size)
        return Framed(pixels, len(faces), "cropped to the training framing", face)

    def refine(self, rgb: np.ndarray, face: Face) -> Face:
        """The face's box found again at the scale the framing was measured at. The detector's
        box-to-face ratio depends on the face's size in pixels and on what surrounds it: one look
        at a photo put 3% of faces' boxes 15-35% too large (crops zoomed out); a second look at
        the region around the first box, resized so its face is LFW-sized, halves that
        (docs/framing.md)."""
        left, top, frame = self.framing.frame_box(face)
        # twice the frame: room for a first box that was too small or too large
        x, y, size = round(left - frame / 2), round(top - frame / 2), max(1, round(2 * frame))
        region = (x, y, x + size, y + size)
        side = 2 * MEASURED_FRAME_PX  # the region is twice the frame: the frame at LFW's scale
        scale = side / (region[2] - region[0])
        again = self.detector.detect(resize(crop(rgb, region), side))
        if not again:
            return face
        f = again[0]
        return Face(f.x / scale + region[0], f.y / scale + region[1], f.width / scale, f.height / scale, f.score)

    def load(self, path: Path) -> Framed:
        return self.frame(decode_rgb(path), str(path))
