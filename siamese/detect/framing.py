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
MIN_LANDMARK_SPREAD = 0.02  # LFW's are 0.09 from their mean: less is not a face's landmarks
# The frame the landmarks give may differ from the box's by this factor before the box is
# trusted over them: on 335 training-identity LFW images their ratio spans 0.86-1.09 (0.5th to
# 99.5th percentile), so 1.5 leaves only landmarks that are not a face's.
LANDMARK_BOX_RATIO = 1.5
MAX_VIEW_FRAME_PX = 1000  # views are warped at the photo's scale up to this frame side (4x LFW's)


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
    """`kind` "detected": detect the photo's face (`frame.subject`) and frame it where the
    training images hold it; "whole": the whole frame, resized (the training images were not photos: synthetic).
    centre_x, centre_y: the face box's centre; side: its side (sqrt of its area); all shares of
    the frame's side, medians over the training images. A frame whose face already sits within
    `centre_tolerance` of that centre and `side_tolerance` (relative) of that side is framed
    like LFW already and passes unchanged, so LFW images give the same answers either way.
    `crop`: the centred share of that frame the network sees (1: all of it), for either kind.
    `landmarks`: where the training images hold the face's five landmarks (shares of the frame);
    a face found with landmarks is then rotated, scaled and shifted onto them (as deep funneling
    aligned LFW's faces), one found without them (or with implausible ones) is cropped by its
    box. None: every face by its box, as exports before 2026-12-06."""

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
    def for_data_set(cls, data_set: str, crop: float = 1.0, aligned: bool = True) -> Framing:
        """LFW's measured framing for a model trained on LFW photos (`aligned`: with its landmarks,
        as exports since 2026-12-06; False: by the box, as artifacts before them); the whole frame
        otherwise (synthetic faces are drawings a face detector does not find)."""
        if data_set != "lfw":
            return cls(kind="whole", crop=crop)
        return cls(crop=crop, landmarks=LFW_LANDMARKS if aligned else None)

    def __post_init__(self):
        if self.kind not in FRAMINGS:
            raise SiameseError(f"framing kind {self.kind!r} is not one of {', '.join(FRAMINGS)}")
        numbers = (self.centre_x, self.centre_y, self.side, self.centre_tolerance, self.side_tolerance)
        if not all(isinstance(v, int | float) and math.isfinite(v) and 0 < v < 1 for v in numbers):
            raise SiameseError(f"framing figures must be shares between 0 and 1, got {numbers}")
        if not (isinstance(self.crop, int | float) and MIN_CROP <= self.crop <= 1):
            raise SiameseError(f"framing crop must be a share between {MIN_CROP} and 1, got {self.crop!r}")
        if self.landmarks is not None:
            points = _points(self.landmarks)
            if points is None or not ((points > 0) & (points < 1)).all() or _spread(points) < MIN_LANDMARK_SPREAD:
                raise SiameseError(
                    f"framing landmarks must be 5 distinct (x, y) shares between 0 and 1, got {self.landmarks!r}"
                )
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

    def landmark_fit(self, face: Face) -> tuple[float, np.ndarray, np.ndarray] | None:
        """The similarity that puts LFW's landmarks (in frame shares) onto `face`'s: the training
        frame's side in the photo's pixels, its rotation and its corner. None where either has no
        landmarks, or where the fit disagrees with the face's box by more than LANDMARK_BOX_RATIO
        in scale (landmarks of a face seen from the side or half hidden): the box frames it then."""
        if self.landmarks is None or face.landmarks is None:
            return None
        frame, rotation, shift = similarity(np.asarray(self.landmarks), np.asarray(face.landmarks))
        by_box = face.side / self.side
        if not (by_box / LANDMARK_BOX_RATIO <= frame <= by_box * LANDMARK_BOX_RATIO):
            return None
        return frame, rotation, shift

    def aligns(self, face: Face) -> bool:
        return self.landmark_fit(face) is not None

    def view(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The network's view of a photo whose face is `face`, at the photo's own scale up to
        MAX_VIEW_FRAME_PX (the caller resizes it): aligned by the landmarks (`landmark_fit`),
        else cropped by the box."""
        fit = self.landmark_fit(face)
        if fit is None:
            return crop(rgb, self.crop_box(face))
        frame, rotation, shift = fit
        if frame > MAX_VIEW_FRAME_PX:  # a face filling a 40 MP photo: shrink first (antialiased), not warp it whole
            k = MAX_VIEW_FRAME_PX / frame
            height, width = rgb.shape[:2]
            small = Image.fromarray(rgb).resize((max(1, round(width * k)), max(1, round(height * k))))
            return self.view(np.asarray(small), face.moved(k))
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


def _points(values) -> np.ndarray | None:
    """Five (x, y) finite numbers as a (5, 2) array, or None."""
    try:
        if len(values) != 5 or any(len(p) != 2 for p in values):
            return None
        if not all(isinstance(v, int | float) and math.isfinite(v) for p in values for v in p):
            return None
    except TypeError:
        return None
    return np.asarray(values, dtype=float)


def _spread(points: np.ndarray) -> float:
    return float(((points - points.mean(0)) ** 2).sum(1).mean() ** 0.5)


def crop(rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """rgb[top:bottom, left:right], the parts beyond the image filled by repeating its edge
    pixels (a border of black would be a feature the training images never had)."""
    left, top, right, bottom = box
    height, width = rgb.shape[:2]
    pad = ((max(0, -top), max(0, bottom - height)), (max(0, -left), max(0, right - width)), (0, 0))
    inside = rgb[max(0, top) : min(height, bottom), max(0, left) : min(width, right)]
    return np.pad(inside, pad, mode="edge") if any(p for axis in pad for p in axis) else inside
