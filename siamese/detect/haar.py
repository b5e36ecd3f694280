"""OpenCV's frontal-face Haar cascade (Viola-Jones), whose model file ships in the
opencv-python-headless wheel: the classic baseline, measured against YuNet in docs/framing.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siamese.core.provenance import missing_module
from siamese.detect.base import Detector, Face

CASCADE = "haarcascade_frontalface_default.xml"
CASCADE_SHA256 = "0f7d4527844eb514d4a4948e822da90fbb16a34a0bbbbc6adc6498747a5aafb0"


class Haar(Detector):
    name = "haar"
    package = "opencv-python-headless"

    def __init__(self):
        super().__init__()
        self._cascade = None

    def missing(self) -> str | None:
        return missing_module("cv2", "pip install 'opencv-python-headless<4.11' (the dev extra)")

    def model_file(self) -> tuple[Path, str]:
        import cv2

        return Path(cv2.data.haarcascades) / CASCADE, CASCADE_SHA256

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        if self._cascade is None:
            self._cascade = cv2.CascadeClassifier(str(self.model_file()[0]))
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        smallest = max(20, min(grey.shape) // 12)
        boxes = self._cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest))
        return [Face(*map(float, box), score=1.0) for box in boxes]
