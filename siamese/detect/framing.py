"""Framing: where the face sits in the images the network was trained on, and how a face
detected in any photo is put at the same place and scale.

The figures are measured, not guessed (`python -m bench.studies.detectors`, docs/framing.md):
the detector's box and five landmarks of the face on the deep-funneled LFW images of the
training identities, as shares of the 250 x 250 frame. A model may see only the frame's centred
`crop` share (training decodes each LFW frame that way); a detected face is aligned by its
landmarks to LFW's (or, without landmarks, cropped by its box) and shown at that same share.
An export stores its Framing beside the normalisation, so every client (siamese-verify, the
Python API, a Triton client) frames the same way."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from siamese.core.errors import SiameseError
from siamese.core.preprocess import centre_crop
from siamese.detect.base import Face

FRAMINGS = ("detected", "whole")
MEASURED_FRAME_PX = 250  # the side of the deep-funneled frames the figures below were measured on
MIN_CROP = 0.3  # a tighter crop than this would cut into the face (its box is 0.43 of the frame)
# YuNet's five landmarks (siamese.detect.base.LANDMARKS order) on the deep-funneled frames of the
# training identities, medians as shares of the frame: `python -m bench.studies.detectors`
LFW_LANDMARKS = ((0.412, 0.448), (0.588, 0.444), (0.504, 0.544), (0.432, 0.620), (0.580, 0.620))


def similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The scale s, rotation R and shift t that map the (N, 2) points `source` closest to
    `target` (least squares: target ~ s R source + t; Umeyama, 1991)."""
    mean_s, mean_t = source.mean(0), target.mean(0)
    a, b = source - mean_s, target - mean_t
    u, singular, vt = np.linalg.svd(b.T @ a / len(a))
    reflect = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])  # a rotation, never a mirror image
    rotation = u @ reflect @ vt
    scale = float(np.trace(np.diag(singular) @ reflect) / ((a**2).sum() / len(a)))
    return scale, rotation, mean_t - scale * rotation @ mean_s


@dataclass(frozen=True)
class Framing:
    """`kind` "detected": detect the photo's face (`frame.subject`) and crop it to where the
    training images hold it; "whole": the whole frame, resized (the training images were not photos: synthetic).
    centre_x, centre_y: the face box's centre; side: its side (sqrt of its area); all shares of
    the frame's side, medians over the training images. A frame whose face already sits within
    `centre_tolerance` of that centre and `side_tolerance` (relative) of that side is framed
    like LFW already and passes unchanged, so LFW images give the same answers either way.
    `crop`: the centred share of that frame the network sees (1: all of it), for either kind.
    `landmarks`: where the training images hold the face's five landmarks (shares of the frame);
    a face found with landmarks is then rotated, scaled and shifted onto them (as deep funneling
    aligned LFW's faces), one found without them is cropped by its box. None: by the box."""

    SCHEMA = "siamese-framing/3"
    READS = ("siamese-framing/1", "siamese-framing/2", SCHEMA)  # /1 had no crop, /1 and /2 no landmarks

    kind: str = "detected"
    detector: str = "yunet"
    centre_x: float = 0.498
    centre_y: float = 0.510
    side: float = 0.4261
    centre_tolerance: float = 0.06
    side_tolerance: float = 0.15
    crop: float = 1.0
    landmarks: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def for_data_set(cls, data_set: str, crop: float = 1.0) -> Framing:
        """LFW's measured framing for a model trained on LFW photos; the whole frame otherwise
        (synthetic faces are drawings a face detector does not find)."""
        return cls(crop=crop, landmarks=LFW_LANDMARKS) if data_set == "lfw" else cls(kind="whole", crop=crop)

    def __post_init__(self):
        if self.kind not in FRAMINGS:
            raise SiameseError(f"framing kind {self.kind!r} is not one of {', '.join(FRAMINGS)}")
        numbers = (self.centre_x, self.centre_y, self.side, self.centre_tolerance, self.side_tolerance)
        if not all(isinstance(v, int | float) and math.isfinite(v) and 0 < v < 1 for v in numbers):
            raise SiameseError(f"framing figures must be shares between 0 and 1, got {numbers}")
        if not (isinstance(self.crop, int | float) and MIN_CROP <= self.crop <= 1):
            raise SiameseError(f"framing crop must be a share between {MIN_CROP} and 1, got {self.crop!r}")
        if self.landmarks is not None:
            points = np.asarray(self.landmarks, dtype=float) if _all_numbers(self.landmarks) else None
            if points is None or points.shape != (5, 2) or not ((points > 0) & (points < 1)).all():
                raise SiameseError(f"framing landmarks must be 5 (x, y) shares between 0 and 1, got {self.landmarks!r}")
            object.__setattr__(self, "landmarks", tuple(tuple(map(float, p)) for p in points))  # lists from JSON

    def to_dict(self) -> dict:
        return {"schema": self.SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, source: str) -> Framing:
        if not isinstance(d, dict) or d.get("schema") not in cls.READS:
            raise SiameseError(
                f"{source}: framing schema {d.get('schema') if isinstance(d, dict) else d!r} is not {cls.SCHEMA}"
            )
        known = {k: v for k, v in d.items() if k != "schema"}
        try:
            return cls(**known)
        except TypeError as exc:
            raise SiameseError(f"{source}: framing: {exc}") from None

    def describe(self) -> str:
        seen = "" if self.crop >= 1 else f"; the network sees its centred {self.crop:.2f}"
        if self.kind == "whole":
            return f"framing: the whole image{seen}, resized (no face detection)"
        how = "aligned by its five landmarks to LFW's, else cropped" if self.landmarks else "cropped"
        return (
            f"framing: the face ({self.detector}; the largest confident one) {how} as in LFW: box centre "
            f"({self.centre_x:.3f}, {self.centre_y:.3f}), side {self.side:.3f} of the frame{seen}"
        )

    def aligns(self, face: Face) -> bool:
        return self.landmarks is not None and face.landmarks is not None

    def view(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The network's view of a photo whose face is `face`, at the photo's own scale (the
        caller resizes it): aligned by the landmarks where both have them, else cropped by the box."""
        if not self.aligns(face):
            return crop(rgb, self.crop_box(face))
        frame, rotation, shift = similarity(np.asarray(self.landmarks), np.asarray(face.landmarks))
        side = max(1, round(frame * self.crop))  # frame: the training frame's side in the photo's pixels
        inset = frame * (1 - self.crop) / 2
        origin = rotation @ np.array([inset, inset]) + shift  # where the view's corner (0, 0) falls
        corners = origin + np.array([[0, 0], [side, 0], [0, side], [side, side]]) @ rotation.T
        left, top = np.floor(corners.min(0)).astype(int) - 1
        right, bottom = np.ceil(corners.max(0)).astype(int) + 1
        region = Image.fromarray(np.ascontiguousarray(crop(rgb, (left, top, right, bottom))))
        # PIL's affine maps each output pixel (u, v) to the input point (a u + b v + c, d u + e v + f)
        coefficients = (*rotation[0], origin[0] - left, *rotation[1], origin[1] - top)
        return np.asarray(
            region.transform((side, side), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
        )

    def network_view(self, frame: np.ndarray) -> np.ndarray:
        """The part of a frame (an image framed as the training images) that the network sees."""
        return centre_crop(frame, self.crop)

    def already_framed(self, face: Face, width: int, height: int) -> bool:
        if abs(width / height - 1) > 0.05:
            return False
        side = math.sqrt(width * height)
        cx, cy = face.centre
        return (
            abs(cx / width - self.centre_x) <= self.centre_tolerance
            and abs(cy / height - self.centre_y) <= self.centre_tolerance
            and abs(face.side / side / self.side - 1) <= self.side_tolerance
        )

    def frame_box(self, face: Face) -> tuple[float, float, float]:
        """(left, top, side) of the square that holds `face` as the LFW frames hold theirs."""
        frame = face.side / self.side
        cx, cy = face.centre
        return cx - self.centre_x * frame, cy - self.centre_y * frame, frame

    def crop_box(self, face: Face) -> tuple[int, int, int, int]:
        """The square (left, top, right, bottom) that holds `face` as the network's view of the
        training frames (their centred `crop` share) holds theirs; it may reach beyond the image."""
        left, top, frame = self.frame_box(face)
        inset = frame * (1 - self.crop) / 2
        left, top, size = round(left + inset), round(top + inset), max(1, round(frame * self.crop))
        return left, top, left + size, top + size


def _all_numbers(points) -> bool:
    try:
        return all(isinstance(v, int | float) and math.isfinite(v) for p in points for v in p)
    except TypeError:
        return False


def crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """rgb[top:bottom, left:right], the parts beyond the image filled by repeating its edge
    pixels (a border of black would be a feature the training images never had)."""
    left, top, right, bottom = box
    height, width = rgb.shape[:2]
    pad = ((max(0, -top), max(0, bottom - height)), (max(0, -left), max(0, right - width)), (0, 0))
    inside = rgb[max(0, top) : min(height, bottom), max(0, left) : min(width, right)]
    return np.pad(inside, pad, mode="edge") if any(p for axis in pad for p in axis) else inside
