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

# Which face a photo is of, where the detector finds several: the largest of those scoring
# within this of the most confident one. On 1,500 images of training people, "the largest"
# took a false face in the background of 71 pasted photos (4.7%), "the most confident" a
# bystander in 14 LFW frames (0.9%); this rule errs on 6 and 4 (0.4%, 0.3%), margins of 0.02
# to 0.05 alike within noise: `python -m bench.studies.face_choice`, docs/framing.md.
SCORE_MARGIN = 0.03
SAME_FACE_IOU = 0.3  # the second look's box must overlap the first this much to replace it


class NoFace(SiameseError):
    """No face was found in an image: it gets no verdict."""


def subject(faces: list[Face], margin: float = SCORE_MARGIN) -> Face:
    """The face a photo is of: the largest of the faces scoring within `margin` of the best."""
    if not faces:
        raise NoFace("no face to choose from")
    best = max(f.score for f in faces)
    # scores are hundredths (YuNet's percent): the tolerance keeps 0.90 within 0.03 of 0.93
    return max((f for f in faces if f.score >= best - margin - 1e-9), key=lambda f: f.side)


def overlap(a: Face, b: Face) -> float:
    """Intersection over union of two boxes (0 for boxes without area)."""
    width = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    height = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    inter = max(0.0, width) * max(0.0, height)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@dataclass(frozen=True)
class Framed:
    pixels: np.ndarray  # (image_size, image_size, 3) uint8: what the network sees
    faces: int  # faces found (`subject` is used); 0 for the whole-frame framing
    how: str  # "aligned ..." (by landmarks), "cropped ..." (by the box), "as is ..." (framed already), "whole frame"
    face: Face | None = None  # the box of the face used (`subject`), in the decoded image's pixels

    def describe(self) -> str:
        if self.face is None:
            return self.how
        f = self.face
        found = f"{self.faces} faces found, the subject (largest confident)" if self.faces > 1 else "face"
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
        face = subject(faces)
        if self.framing.already_framed(face, width, height):
            pixels = resize(self.framing.network_view(rgb), self.image_size)
            return Framed(pixels, len(faces), "as is (framed as the training images)", face)
        face = self.refine(rgb, face)
        pixels = resize(self.framing.view(rgb, face), self.image_size)
        how = "aligned by its landmarks to" if self.framing.aligns(face) else "cropped to"
        return Framed(pixels, len(faces), f"{how} the training framing", face)

    def refine(self, rgb: np.ndarray, face: Face) -> Face:
        """The face's box found again at the scale the framing was measured at. The detector's
        box-to-face ratio depends on the face's size in pixels and on what surrounds it: one look
        at a photo put 3% of faces' boxes 15-35% too large (crops zoomed out); a second look at
        the region around the first box, resized so its face is LFW-sized, halves that
        (docs/framing.md). The second look keeps the face it was aimed at: the box that overlaps
        the first most, not a neighbour that is larger."""
        left, top, frame = self.framing.frame_box(face)
        # twice the frame: room for a first box that was too small or too large
        x, y, size = round(left - frame / 2), round(top - frame / 2), max(1, round(2 * frame))
        region = (x, y, x + size, y + size)
        side = 2 * MEASURED_FRAME_PX  # the region is twice the frame: the frame at LFW's scale
        scale = side / (region[2] - region[0])
        found = self.detector.detect(resize(crop(rgb, region), side))
        again = [f.moved(1 / scale, region[0], region[1]) for f in found]
        same = max(again, key=lambda f: overlap(f, face), default=None)
        return same if same is not None and overlap(same, face) >= SAME_FACE_IOU else face

    def load(self, path: Path) -> Framed:
        return self.frame(decode_rgb(path), str(path))
